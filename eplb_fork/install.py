"""Installing the fork: a venv with the fork's own requirements, then the fork
itself, editable, through vLLM's precompiled path (`VLLM_USE_PRECOMPILED`):
the compiled extensions come out of the pinned release wheel, so nothing
is compiled here and the fork's Python files are what runs. The same path
builds a wheel of the fork (`build_wheel`) for `pip install` elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from eplb_fork import REPO_ROOT, EngineError
from eplb_fork.gittree import Repo

# What the fork's own tests import beyond its runtime requirements, taken at
# the versions pinned in the fork's requirements/test.txt.
TEST_PACKAGES = ("pytest", "tblib", "hypothesis", "pytest-asyncio", "pytest-timeout")


def _pip(
    venv: Path, *args: str, env: dict[str, str] | None = None, command: str = "install"
) -> None:
    started = time.monotonic()
    print(f"pip {command} {' '.join(a for a in args if not a.startswith('-'))[:100]}")
    # Streamed, so a long install shows progress (pip prints a line per
    # package); this machine's pip config adds index-location noise.
    with subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", "pip", command, "--progress-bar", "off", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            if "is ignored: it is neither" not in line:
                print(f"    {line.rstrip()}", flush=True)
    if pip.returncode != 0:
        raise EngineError(f"pip {command} {args[-1]} failed ({pip.returncode})")
    print(f"    done in {time.monotonic() - started:.0f}s")


def pinned_test_requirements(fork: Path) -> list[str]:
    pins = {}
    for line in (fork / "requirements" / "test.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith(("#", " ")):
            pins[name.strip().lower()] = version.split()[0]
    return [f"{name}=={pins[name]}" if name in pins else name for name in TEST_PACKAGES]


def _stamp(*files: Path) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _precompiled_env(wheel: Path, version: str) -> dict[str, str]:
    """vLLM's setup.py: take the compiled extensions out of `wheel` (copied
    into the tree, listed as package data, build_ext skipped) and install as
    `version`."""
    return {
        "VLLM_USE_PRECOMPILED": "1",
        "VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel),
        "VLLM_VERSION_OVERRIDE": version,
    }


def install_fork(fork: Path, venv: Path, wheel: Path, version: str) -> None:
    if not (venv / "bin" / "python").exists():
        print(f"create {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    requirements = fork / "requirements"
    deps = [requirements / "build.txt", requirements / "cuda.txt", requirements / "common.txt"]
    stamp = venv / f".fork-deps-{_stamp(*deps, requirements / 'test.txt')}"
    if stamp.exists():
        print("fork requirements: already installed in the venv")
    else:
        # torch is the CUDA build vLLM pins (several GB): it is what the
        # precompiled extensions link against.
        _pip(venv, "-r", str(requirements / "build.txt"), "-r", str(requirements / "cuda.txt"))
        _pip(venv, *pinned_test_requirements(fork))
        _pip(venv, "-r", str(REPO_ROOT / "requirements" / "engine.txt"))
        stamp.touch()
    _pip(
        venv, "--no-build-isolation", "--no-deps", "-e", str(fork),
        env=_precompiled_env(wheel, version),
    )  # fmt: skip


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
    _pip(
        venv, "--no-deps", "--no-build-isolation", "--no-cache-dir", f"--wheel-dir={out}",
        f"--config-settings=--build-option=--py-limited-api={python_tag}", str(src),
        env=_precompiled_env(upstream, version), command="wheel",
    )  # fmt: skip
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
            i.filename for i in binaries
            if i.filename not in members or members[i.filename].CRC != i.CRC
        ]  # fmt: skip
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
    print(f"    {len(binaries)} compiled extensions of {upstream.name}; "
          f"{checked} files of the series as committed")  # fmt: skip
    if requires == upstream_requires:
        print(f"    Requires-Dist: {len(requires)}, the same as {upstream.name}")
    else:
        print(f"    Requires-Dist: {len(requires)}; differs from {upstream.name}:")
        for line in sorted(requires ^ upstream_requires):
            print(f"      {'+' if line in requires else '-'} {line.split(':', 1)[1].strip()}")


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if len(found) != 1:
        raise EngineError(f"{venv}: expected one lib/python3*/site-packages, found {len(found)}")
    return found[0]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def link_distributions(source: Path, target: Path, roots: list[str]) -> list[str]:
    """Hard-link the distributions `roots` need, as installed in venv
    `source` (the roots and their unconditional requirements, transitively),
    into venv `target`, so that pip there finds them installed. Linked, not
    copied: torch's CUDA stack is 7 GB. Files outside site-packages (console
    scripts, whose shebang names `source`'s python) are left out. Returns
    the names linked."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement

    source_site, target_site = _site_packages(source), _site_packages(target)
    installed = {_normalized(d.metadata["Name"]): d for d in distributions(path=[str(source_site)])}
    wanted: list[str] = []
    pending = [_normalized(root) for root in roots]
    while pending:
        name = pending.pop()
        if name in wanted:
            continue
        if name not in installed:
            raise EngineError(f"{source} has no {name} to link (run 'make fork' first)")
        wanted.append(name)
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(_normalized(requirement.name))
    for name in wanted:
        for file in installed[name].files or []:
            path = Path(os.path.normpath(source_site / file))
            if not path.is_relative_to(source_site) or not path.is_file():
                continue
            link = target_site / path.relative_to(source_site)
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                link.symlink_to(os.readlink(path))
            else:
                os.link(path, link)
    return sorted(wanted)
