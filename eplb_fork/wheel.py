"""A wheel of the fork for `pip install` on a GPU box: built as vLLM builds its
release wheel, on the precompiled path `install.py` installs through (the
compiled extensions come from the pinned release wheel), then checked against
the fork's commit and that wheel.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from eplb_fork import EngineError
from eplb_fork.gittree import Repo
from eplb_fork.install import precompiled_env, run_pip


def _wheel_tags(wheel: Path) -> tuple[str, str, str]:
    """(python, abi, platform) from a wheel's file name (no build tag)."""
    python_tag, abi_tag, platform_tag = wheel.name.removesuffix(".whl").split("-")[-3:]
    return python_tag, abi_tag, platform_tag


def _metadata(wheel: zipfile.ZipFile) -> list[str]:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return wheel.read(name).decode().split("\n\n", 1)[0].splitlines()


def _requires(metadata: list[str]) -> set[str]:
    return {line for line in metadata if line.startswith("Requires-Dist:")}


def build_wheel(
    fork: Path, venv: Path, upstream: Path, version: str, base: str, dest: Path
) -> Path:
    """A wheel of the fork's HEAD commit, built as vLLM builds its release
    wheel (setuptools bdist_wheel, `--py-limited-api`, then the platform tag
    of the wheel its binaries come from) but on the precompiled path: the
    compiled extensions are those of `upstream`, the pinned release wheel, so
    nothing is compiled. Its metadata is setup.py's: version `version`,
    Requires-Dist the fork's CUDA requirements. It lands in `dest` (older
    vllm wheels there are removed), with `dest/fork-head` naming the commit.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        raise EngineError(
            f"no fork venv at {venv}: run 'make fork' first "
            "(the wheel builds with its torch and build requirements)"
        )
    repo = Repo(fork)
    head = repo.head()
    if repo.is_dirty():
        print(f"note: {fork} has local changes; the wheel is built from HEAD {head[:12]}")
    # A clean checkout of HEAD: nothing untracked in the fork, and nothing
    # stale in setuptools' build/ staging, goes into the wheel.
    src = dest.with_name(dest.name + "-src")
    shutil.rmtree(src, ignore_errors=True)
    print(f"checkout {head[:12]} into {src}")
    repo.git("clone", "--quiet", "--no-checkout", str(fork.resolve()), str(src.resolve()))
    Repo(src).git("checkout", "--quiet", "--detach", head)
    python_tag, abi_tag, platform_tag = _wheel_tags(upstream)
    out = src / "dist"
    # In the venv (its CUDA torch decides setup.py's target) and in the
    # tree: offline, with the cached wheel. About 2 min on 2 cores, most of
    # it zipping upstream's extensions again. No cache: pip would keep a
    # 433 MB copy of every build in its wheel cache.
    run_pip(
        venv,
        "--no-deps",
        "--no-build-isolation",
        "--no-cache-dir",
        f"--wheel-dir={out}",
        f"--config-settings=--build-option=--py-limited-api={python_tag}",
        str(src),
        env=precompiled_env(upstream, version),
        command="wheel",
    )
    built = sorted(out.glob("vllm-*.whl"))
    if len(built) != 1:
        raise EngineError(f"pip wheel left {len(built)} vllm wheels in {out}, expected 1")
    tags = _wheel_tags(built[0])
    if tags[:2] != (python_tag, abi_tag) or not tags[2].startswith("linux_"):
        raise EngineError(
            f"pip wheel built {built[0].name}: expected tags {python_tag}-{abi_tag}-linux_*"
        )
    _check_wheel(built[0], upstream, repo, base, head, version)
    # The release's own step: `linux` becomes the platform tag the binaries
    # were built for (.buildkite/scripts/upload-nightly-wheels.sh).
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("vllm-*.whl"):
        old.unlink()
    final = dest / built[0].name.replace(tags[2], platform_tag)
    built[0].replace(final)
    (dest / "fork-head").write_text(head + "\n")
    shutil.rmtree(src)
    print(f"{final} ({final.stat().st_size / 1e6:.0f} MB)")
    return final


def _check_wheel(
    wheel: Path, upstream: Path, repo: Repo, base: str, head: str, version: str
) -> None:
    """The wheel is the fork: its version, upstream's compiled extensions, the
    series' files as committed; and how its Requires-Dist compares."""
    with zipfile.ZipFile(wheel) as ours, zipfile.ZipFile(upstream) as theirs:
        metadata = _metadata(ours)
        if f"Version: {version}" not in metadata:
            raise EngineError(f"{wheel.name}: METADATA does not give version {version}")
        members = {info.filename: info for info in ours.infolist()}
        binaries = [i for i in theirs.infolist() if i.filename.endswith(".so")]
        missing = [
            i.filename
            for i in binaries
            if i.filename not in members or members[i.filename].CRC != i.CRC
        ]
        if missing or not binaries:
            raise EngineError(
                f"{wheel.name} lacks {upstream.name}'s compiled extensions "
                f"({', '.join(missing) or 'none found'}); is the venv's torch the CUDA build?"
            )
        changes = repo.git("diff", "--name-status", "--no-renames", f"{base}..{head}", "--", "vllm")
        checked = 0
        for line in changes.splitlines():
            status, path = line.split("\t", 1)
            if status == "D":
                if path in members:
                    raise EngineError(f"{wheel.name} has {path}, which the series deletes")
                continue
            if path not in members or ours.read(path).decode() != repo.read_blob(head, path):
                raise EngineError(f"{wheel.name}: {path} is not the fork's {head[:12]}")
            checked += 1
        requires, upstream_requires = _requires(metadata), _requires(_metadata(theirs))
    print(
        f"    {len(binaries)} compiled extensions of {upstream.name}; "
        f"{checked} files of the series as committed"
    )
    if requires == upstream_requires:
        print(f"    Requires-Dist: {len(requires)}, the same as {upstream.name}")
    else:
        print(f"    Requires-Dist: {len(requires)}; differs from {upstream.name}:")
        for line in sorted(requires ^ upstream_requires):
            print(f"      {'+' if line in requires else '-'} {line.split(':', 1)[1].strip()}")
