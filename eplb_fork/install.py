"""Installing the fork: a venv with the fork's own requirements, then the fork
itself, editable, through vLLM's precompiled path (`VLLM_USE_PRECOMPILED`):
the compiled extensions come out of the pinned release wheel, so nothing
is compiled here and the fork's Python files are what runs. `wheel.py` builds
a wheel of the fork on the same path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from eplb_fork import REPO_ROOT, EngineError

# What the fork's own tests import beyond its runtime requirements, taken at
# the versions pinned in the fork's requirements/test.txt.
TEST_PACKAGES = ("pytest", "tblib", "hypothesis", "pytest-asyncio", "pytest-timeout")


def run_pip(
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


def requirement_files(fork: Path) -> tuple[Path, Path, Path]:
    """The fork's build, CUDA runtime and test requirements. Releases from
    about 0.30 keep build and test pins per platform in folders
    (requirements/build/cuda.txt, requirements/test/cuda.txt)."""
    requirements = fork / "requirements"
    if (requirements / "build.txt").exists():
        return requirements / "build.txt", requirements / "cuda.txt", requirements / "test.txt"
    per_platform = (requirements / "build" / "cuda.txt", requirements / "test" / "cuda.txt")
    if not all(path.exists() for path in per_platform):
        raise EngineError(
            f"{fork} has neither requirements/build.txt nor requirements/build/cuda.txt"
        )
    return per_platform[0], requirements / "cuda.txt", per_platform[1]


def pinned_test_requirements(test_pins: Path) -> list[str]:
    pins = {}
    for line in test_pins.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith(("#", " ")):
            pins[name.strip().lower()] = version.split()[0]
    return [f"{name}=={pins[name]}" if name in pins else name for name in TEST_PACKAGES]


def _stamp(*files: Path) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def precompiled_env(wheel: Path, version: str) -> dict[str, str]:
    """vLLM's setup.py: take the compiled extensions out of `wheel` (copied
    into the tree, listed as package data, build_ext skipped) and install as
    `version`."""
    return {
        "VLLM_USE_PRECOMPILED": "1",
        "VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel),
        "VLLM_VERSION_OVERRIDE": version,
    }


def swapped_requirements(requirements: Path, swaps: dict[str, str], out: Path) -> Path:
    """`requirements` as pip should read it, with each line of `swaps` put
    in its place (an empty one drops the line), written to `out` (the
    fork's tree stays as committed); the file itself when there is nothing
    to swap. A swap whose line the file lacks is an error: the pin it fixes
    has moved."""
    if not swaps:
        return requirements
    lines = requirements.read_text().splitlines()
    missing = [old for old in swaps if old not in (line.split("#")[0].strip() for line in lines)]
    if missing:
        raise EngineError(f"{requirements} has no line {', '.join(missing)} to swap")
    swapped = []
    for line in lines:
        bare = line.split("#")[0].strip()
        if bare in swaps:
            print(f"requirement {bare} -> {swaps[bare] or '(dropped)'} (requirements/base.toml)")
            if not swaps[bare]:
                continue
            line = swaps[bare]
        elif bare.startswith("-r "):
            # Included files stay where the original is.
            line = f"-r {requirements.parent.resolve() / bare.removeprefix('-r ').strip()}"
        swapped.append(line)
    out.write_text("\n".join(swapped) + "\n")
    return out


def install_fork(
    fork: Path, venv: Path, wheel: Path, version: str, swaps: dict[str, str] | None = None
) -> None:
    if not (venv / "bin" / "python").exists():
        print(f"create {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    build, cuda, test = requirement_files(fork)
    cuda = swapped_requirements(cuda, swaps or {}, venv / "eplb-fork-cuda.txt")
    stamp = venv / f".fork-deps-{_stamp(build, cuda, fork / 'requirements' / 'common.txt', test)}"
    if stamp.exists():
        print("fork requirements: already installed in the venv")
    else:
        # torch is the CUDA build vLLM pins (several GB): it is what the
        # precompiled extensions link against.
        run_pip(venv, "-r", str(build), "-r", str(cuda))
        run_pip(venv, *pinned_test_requirements(test))
        run_pip(venv, "-r", str(REPO_ROOT / "requirements" / "engine.txt"))
        stamp.touch()
    run_pip(
        venv,
        "--no-build-isolation",
        "--no-deps",
        "-e",
        str(fork),
        env=precompiled_env(wheel, version),
    )
