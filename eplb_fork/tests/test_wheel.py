"""The wheel's checks on small synthetic trees and wheels: the fork's version,
upstream's compiled extensions, the series' files as committed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from eplb_fork import EngineError
from eplb_fork.__main__ import main
from eplb_fork.tests.synthetic import AUTHOR, make_repo
from eplb_fork.wheel import _check_wheel, _wheel_tags

BINARY = b"\x7fELF compiled"
REQUIRES = ["torch==2.10.0", "numpy"]


def make_wheel(path: Path, version: str, files: dict[str, bytes], requires=REQUIRES) -> Path:
    metadata = "\n".join(
        ["Metadata-Version: 2.4", "Name: vllm", f"Version: {version}"]
        + [f"Requires-Dist: {r}" for r in requires]
    )
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"vllm-{version}.dist-info/METADATA", metadata + "\n\nREADME\n")
    return path


@pytest.fixture
def fork(tmp_path):
    repo = make_repo(
        tmp_path / "fork",
        {"vllm/a.py": "a = 1\n", "vllm/gone.py": "x = 1\n", "tests/t.py": "t = 1\n"},
    )
    repo.git("tag", "base")
    (repo.path / "vllm" / "a.py").write_text("a = 2\n")
    (repo.path / "vllm" / "new.py").write_text("new = 1\n")
    (repo.path / "vllm" / "gone.py").unlink()
    repo.git("add", "--all")
    repo.git("commit", "--quiet", "-m", "[EPLB] patch", env=AUTHOR.env())
    return repo


@pytest.fixture
def upstream(tmp_path):
    files = {"vllm/_C.abi3.so": BINARY, "vllm/a.py": b"a = 1\n", "vllm/gone.py": b"x = 1\n"}
    return make_wheel(tmp_path / "vllm-1.0-cp38-abi3-manylinux_2_31_x86_64.whl", "1.0", files)


def ours(tmp_path, **changes: bytes | None) -> Path:
    files = {"vllm/_C.abi3.so": BINARY, "vllm/a.py": b"a = 2\n", "vllm/new.py": b"new = 1\n"}
    files.update(changes)
    files = {name: data for name, data in files.items() if data is not None}
    return make_wheel(tmp_path / "vllm-1.0+eplb.1-cp38-abi3-linux_x86_64.whl", "1.0+eplb.1", files)


def check(wheel: Path, upstream: Path, fork, version: str = "1.0+eplb.1") -> None:
    _check_wheel(wheel, upstream, fork, "base", fork.head(), version)


def test_the_fork_as_committed_passes(tmp_path, fork, upstream, capsys):
    check(ours(tmp_path), upstream, fork)
    out = capsys.readouterr().out
    assert "1 compiled extensions" in out and "2 files of the series" in out
    assert "Requires-Dist: 2, the same as" in out


def test_upstream_tags(upstream):
    assert _wheel_tags(upstream) == ("cp38", "abi3", "manylinux_2_31_x86_64")


def test_wrong_version_is_refused(tmp_path, fork, upstream):
    with pytest.raises(EngineError, match="does not give version 1.0\\+eplb.2"):
        check(ours(tmp_path), upstream, fork, version="1.0+eplb.2")


@pytest.mark.parametrize("binary", [None, b"another build"])
def test_missing_or_other_extensions_are_refused(tmp_path, fork, upstream, binary):
    with pytest.raises(EngineError, match="lacks .* compiled extensions .*_C.abi3.so.*CUDA"):
        check(ours(tmp_path, **{"vllm/_C.abi3.so": binary}), upstream, fork)


def test_a_file_not_as_committed_is_refused(tmp_path, fork, upstream):
    with pytest.raises(EngineError, match="vllm/a.py is not the fork's"):
        check(ours(tmp_path, **{"vllm/a.py": b"a = 1\n"}), upstream, fork)
    with pytest.raises(EngineError, match="vllm/new.py is not the fork's"):
        check(ours(tmp_path, **{"vllm/new.py": None}), upstream, fork)


def test_a_file_the_series_deletes_is_refused(tmp_path, fork, upstream):
    with pytest.raises(EngineError, match="has vllm/gone.py, which the series deletes"):
        check(ours(tmp_path, **{"vllm/gone.py": b"x = 1\n"}), upstream, fork)


def test_changed_requirements_are_reported(tmp_path, fork, upstream, capsys):
    wheel = make_wheel(
        tmp_path / "ours.whl", "1.0+eplb.1",
        {"vllm/_C.abi3.so": BINARY, "vllm/a.py": b"a = 2\n", "vllm/new.py": b"new = 1\n"},
        requires=["torch==2.10.0", "scipy"],
    )  # fmt: skip
    check(wheel, upstream, fork)
    out = capsys.readouterr().out
    assert "+ scipy" in out and "- numpy" in out


def test_cli_without_a_fork_says_what_to_run(tmp_path, capsys):
    assert main(["--fork", str(tmp_path / "none"), "wheel"]) == 1
    err = capsys.readouterr().err
    assert "no fork at" in err and "run 'make fork' first" in err
