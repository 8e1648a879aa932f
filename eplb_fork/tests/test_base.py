"""Fetching a pinned file: the cache when it holds the pinned bytes, else a
fetch whose result must hold them."""

from __future__ import annotations

import hashlib

import pytest

from eplb_fork import EngineError
from eplb_fork.base import _pinned_file

PINNED = b"the pinned release"
SHA256 = hashlib.sha256(PINNED).hexdigest()


def fetcher(data: bytes, calls: list[str]):
    def fetch(dest):
        calls.append(dest.name)
        dest.write_bytes(data)

    return fetch


def test_a_cached_file_with_the_pinned_hash_is_not_fetched(tmp_path, capsys):
    (tmp_path / "vllm.tar.gz").write_bytes(PINNED)
    calls: list[str] = []
    path = _pinned_file("sdist", tmp_path / "vllm.tar.gz", SHA256, fetcher(b"", calls))
    assert path.read_bytes() == PINNED and calls == []
    assert "sdist vllm.tar.gz: cached, sha256 ok" in capsys.readouterr().out


def test_a_missing_or_stale_file_is_fetched_into_a_new_folder(tmp_path, capsys):
    dest = tmp_path / "wheels" / "vllm.whl"
    calls: list[str] = []
    assert _pinned_file("wheel", dest, SHA256, fetcher(PINNED, calls)).read_bytes() == PINNED
    dest.write_bytes(b"stale")
    assert _pinned_file("wheel", dest, SHA256, fetcher(PINNED, calls)).read_bytes() == PINNED
    assert calls == ["vllm.whl", "vllm.whl"]
    assert "cached vllm.whl has sha256" in capsys.readouterr().out


def test_a_fetch_without_the_pinned_hash_is_refused(tmp_path):
    dest = tmp_path / "vllm.whl"
    with pytest.raises(EngineError, match="fetched vllm.whl does not have the pinned sha256"):
        _pinned_file("wheel", dest, SHA256, fetcher(b"other bytes", []))
    assert not dest.exists()


def test_requirement_files_of_both_layouts(tmp_path):
    """Up to about 0.30 vLLM keeps requirements/build.txt and test.txt; later
    releases keep build and test pins per platform in folders."""
    from eplb_fork.install import requirement_files

    old = tmp_path / "old" / "requirements"
    for name in ("build.txt", "cuda.txt", "test.txt"):
        (old / name).parent.mkdir(parents=True, exist_ok=True)
        (old / name).write_text("")
    assert requirement_files(old.parent) == (old / "build.txt", old / "cuda.txt", old / "test.txt")
    new = tmp_path / "new" / "requirements"
    for name in ("build/cuda.txt", "test/cuda.txt", "cuda.txt"):
        (new / name).parent.mkdir(parents=True, exist_ok=True)
        (new / name).write_text("")
    assert requirement_files(new.parent) == (
        new / "build" / "cuda.txt", new / "cuda.txt", new / "test" / "cuda.txt"
    )
    (new / "build" / "cuda.txt").unlink()
    with pytest.raises(EngineError, match="requirements/build/cuda.txt"):
        requirement_files(new.parent)


def test_a_swapped_requirement_is_installed_in_its_place(tmp_path):
    from eplb_fork.install import swapped_requirements

    reqs = tmp_path / "requirements"
    reqs.mkdir()
    (reqs / "cuda.txt").write_text("-r common.txt\ntorch==2.14.0\nflashinfer-python==0.7.3\n")
    out = swapped_requirements(
        reqs / "cuda.txt", {"flashinfer-python==0.7.3": "flashinfer-python==0.7.4"},
        tmp_path / "swapped.txt",
    )  # fmt: skip
    assert out.read_text().splitlines() == [
        f"-r {(reqs / 'common.txt').resolve()}", "torch==2.14.0", "flashinfer-python==0.7.4"
    ]
    assert (reqs / "cuda.txt").read_text().endswith("0.7.3\n")  # the tree is untouched
    assert swapped_requirements(reqs / "cuda.txt", {}, tmp_path / "x.txt") == reqs / "cuda.txt"
    dropped = swapped_requirements(reqs / "cuda.txt", {"torch==2.14.0": ""}, tmp_path / "d.txt")
    assert "torch" not in dropped.read_text()
    with pytest.raises(EngineError, match="no line flashinfer-python==0.7.2"):
        swapped_requirements(reqs / "cuda.txt", {"flashinfer-python==0.7.2": "x"}, out)
