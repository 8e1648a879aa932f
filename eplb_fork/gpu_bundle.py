"""A fork's GPU bundle: what the GPU machine, which has torch and Triton but
no vLLM, needs to run the fork's kernel tests, memcheck and benchmarks
through gpu_standalone (`make gpu-bundle`, one per release; the run is
gpu-results/gpu-run.sh). It is the same for every line: the line says, as
data, which revisions of the router its benchmarks compare and how
(`GPU_REVISIONS`, `GPU_BENCHMARKS`, `GPU_MEMCHECK` in its `__init__.py`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

from eplb_fork import REPO_ROOT, EngineError
from eplb_fork.base import Release
from eplb_fork.baserepo import base_tag
from eplb_fork.fork_files import BASE_ROUTER, DEFAULT_MOE_RUNNER, EPLB_STATE, EPLB_TRITON
from eplb_fork.gittree import Repo
from eplb_fork.series import Line, patch_commits

# The fork files gpu_standalone loads, where the release has them, and the
# folders whose EPLB files the run executes.
LOADED = (BASE_ROUTER, EPLB_TRITON, DEFAULT_MOE_RUNNER, EPLB_STATE)
RUN_FOLDERS = ("tests/kernels/moe", "benchmarks/kernels")
# This repo's benchmarks, for a fork without them: a line's benchmark may
# import another line's helpers (the current line's imports the backport's).
HELPERS = REPO_ROOT / "benchmarks" / "kernels"
MANIFEST = "bundle.json"


def revisions(fork: Repo, tag: str, line: Line) -> dict[str, str]:
    """The router states a bundle carries, by name: the release's own
    (`base`), each patch commit the line names, and the tip (`head`)."""
    held = patch_commits(fork, "HEAD", tag)
    missing = [patch for patch in line.gpu_revisions.values() if patch not in held]
    if missing:
        raise EngineError(f"{fork.path} has no commit of {', '.join(missing)}")
    named = {name: held[patch] for name, patch in line.gpu_revisions.items()}
    return {"base": tag, **named, "head": "HEAD"}


def _files_at_head(fork: Repo) -> list[str]:
    tracked = fork.git("ls-files", *LOADED, *RUN_FOLDERS).splitlines()
    return [
        path
        for path in tracked
        if path in LOADED or ("eplb" in PurePosixPath(path).name and path.endswith(".py"))
    ]


def make_bundle(fork: Repo, release: Release, line: Line, dest: Path) -> list[str]:
    """Write the bundle of `fork` (`release` under `line`) into `dest`,
    replacing what was there; return its files."""
    named = revisions(fork, base_tag(release), line)
    if dest.exists():
        shutil.rmtree(dest)
    written: list[str] = []

    def write(path: str, text: str) -> None:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(path)

    present = _files_at_head(fork)
    for path in present:
        write(path, fork.read_blob("HEAD", path))
    for helper in sorted(HELPERS.glob("*.py")):
        path = f"benchmarks/kernels/{helper.name}"
        if path not in present:
            write(path, helper.read_text())
    # Each revision's router, and from 0.34 the shared map+record it binds.
    for name, rev in named.items():
        write(f"revisions/{name}.py", fork.read_blob(rev, BASE_ROUTER))
        if EPLB_TRITON in present:
            write(f"revisions/{name}_eplb_triton.py", fork.read_blob(rev, EPLB_TRITON))
    manifest = {
        "release": release.version,
        "line": line.name,
        "revisions": {
            name: fork.git("rev-parse", f"{rev}^{{commit}}") for name, rev in named.items()
        },
        "memcheck": list(line.gpu_memcheck),
        "benchmarks": [list(command) for command in line.gpu_benchmarks],
    }
    write(MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return written
