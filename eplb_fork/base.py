"""Base vLLM releases: pinned in requirements/base.toml, fetched through the
package index pip is configured with, verified, cached.

pip cannot `download` an sdist without building its metadata (which for vLLM
means a CUDA toolchain), so the sdist comes through the index's PEP 691 JSON
API instead; the wheel goes through `pip download --no-deps`, which is what
vLLM's precompiled install path expects to find.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eplb_fork import REPO_ROOT, EngineError, progress

PINS_FILE = REPO_ROOT / "requirements" / "base.toml"
DEFAULT_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class Release:
    version: str
    sdist: str
    sdist_sha256: str
    wheel: str
    wheel_sha256: str
    released: str
    # A requirement line of the release's own requirements files that its
    # package index cannot serve, and the line installed in its place.
    requirement_swaps: dict[str, str] = field(default_factory=dict)


def load_pins(pins_file: Path = PINS_FILE) -> tuple[str, dict[str, Release]]:
    data = tomllib.loads(pins_file.read_text())
    releases = {
        version: Release(version=version, **fields) for version, fields in data["releases"].items()
    }
    return data["default"], releases


def pinned_release(version: str | None = None) -> Release:
    default, releases = load_pins()
    version = version or default
    if version not in releases:
        known = ", ".join(sorted(releases))
        raise EngineError(f"base {version} is not pinned in {PINS_FILE.name} ({known})")
    return releases[version]


def configured_index_url() -> str:
    """The index pip itself would use: PIP_INDEX_URL, then pip's config."""
    if url := os.environ.get("PIP_INDEX_URL"):
        return url.rstrip("/")
    found = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
        capture_output=True,
        text=True,
    )
    url = found.stdout.strip() if found.returncode == 0 else ""
    return (url or DEFAULT_INDEX).rstrip("/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _index_entry(index_url: str, project: str, filename: str) -> dict:
    request = urllib.request.Request(
        f"{index_url}/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        listing = json.load(response)
    for entry in listing.get("files", []):
        if entry["filename"] == filename:
            entry["url"] = urllib.parse.urljoin(f"{index_url}/{project}/", entry["url"])
            return entry
    raise EngineError(f"{filename} is not listed by {index_url}/{project}/")


def _download(url: str, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=120) as response, partial.open("wb") as f:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        with progress.Meter(f"fetch {dest.name}", total) as meter:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                done += len(chunk)
                meter.update(done)
    partial.replace(dest)


def _verified(path: Path, expected: str) -> bool:
    if not path.exists():
        return False
    actual = sha256_of(path)
    if actual != expected:
        print(f"cached {path.name} has sha256 {actual}, expected {expected}: refetching")
        path.unlink()
        return False
    return True


def _pinned_file(kind: str, dest: Path, sha256: str, fetch: Callable[[Path], None]) -> Path:
    """`dest` with the pinned `sha256`: the cached file if it has it, else
    what `fetch(dest)` puts there, which must have it."""
    if _verified(dest, sha256):
        print(f"{kind} {dest.name}: cached, sha256 ok")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetch(dest)
    if not _verified(dest, sha256):
        raise EngineError(f"the fetched {dest.name} does not have the pinned sha256")
    return dest


def fetch_sdist(release: Release, cache: Path) -> Path:
    def from_index(dest: Path) -> None:
        index_url = configured_index_url()
        entry = _index_entry(index_url, "vllm", release.sdist)
        index_hash = entry.get("hashes", {}).get("sha256")
        if index_hash != release.sdist_sha256:
            raise EngineError(
                f"{index_url} publishes sha256 {index_hash} for {release.sdist}, "
                f"but requirements/base.toml pins {release.sdist_sha256}"
            )
        _download(entry["url"], dest)

    return _pinned_file("sdist", cache / release.sdist, release.sdist_sha256, from_index)


def fetch_wheel(release: Release, cache: Path) -> Path:
    def with_pip(dest: Path) -> None:
        print(f"pip download vllm=={release.version} --no-deps (about 430 MB)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--progress-bar",
                "on",
                "-d",
                str(dest.parent),
                f"vllm=={release.version}",
            ],
            check=True,
        )

    return _pinned_file("wheel", cache / "wheels" / release.wheel, release.wheel_sha256, with_pip)


def extract_sdist(sdist: Path, dest: Path) -> None:
    """Unpack the sdist's single top folder into `dest` (which must not exist)."""
    staging = dest.with_name(dest.name + ".unpack")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        archive.extractall(staging, filter="data")
    (top,) = staging.iterdir()
    top.rename(dest)
    staging.rmdir()
