"""Hard-linking installed distributions into another venv, on fake venvs."""

from __future__ import annotations

from pathlib import Path

import pytest

from eplb_fork import EngineError
from eplb_fork.links import link_distributions


def fake_venv(root: Path, dists: dict[str, tuple[list[str], dict[str, bytes]]]) -> Path:
    """A venv's layout with `name: (Requires-Dist lines, files)` installed."""
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for name, (requires, files) in dists.items():
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        metadata = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
        (info / "METADATA").write_text(
            "\n".join(metadata + [f"Requires-Dist: {r}" for r in requires]) + "\n"
        )
        record = [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
        for relative, data in files.items():
            path = site / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            record.append(f"{relative},,")
        (info / "RECORD").write_text("\n".join(record) + "\n")
    return root


def test_link_takes_the_roots_and_their_unconditional_requirements(tmp_path):
    source = fake_venv(tmp_path / "source", {
        "torch": (["nvidia_cublas", "triton; platform_system == 'Linux'",
                   "optree; extra == 'optree'", "win32; sys_platform == 'win32'"],
                  {"torch/__init__.py": b"t", "../../../bin/torchrun": b"#!/source/python"}),
        "nvidia-cublas": ([], {"nvidia/cublas/lib/libcublas.so": b"\x7fELF"}),
        "triton": (["nvidia-cublas"], {"triton/__init__.py": b"tr"}),
        "optree": ([], {"optree/__init__.py": b"o"}),
        "win32": ([], {"win32/__init__.py": b"w"}),
        "numpy": ([], {"numpy/__init__.py": b"n"}),
    })  # fmt: skip
    target = fake_venv(tmp_path / "target", {})
    assert link_distributions(source, target, ["torch"]) == ["nvidia-cublas", "torch", "triton"]
    site = lambda venv: venv / "lib" / "python3.11" / "site-packages"  # noqa: E731
    for relative in ["torch/__init__.py", "nvidia/cublas/lib/libcublas.so",
                     "triton-1.0.dist-info/RECORD"]:  # fmt: skip
        linked, original = site(target) / relative, site(source) / relative
        assert linked.read_bytes() == original.read_bytes()
        assert linked.stat().st_ino == original.stat().st_ino
    for absent in ["optree", "win32", "numpy"]:
        assert not (site(target) / absent).exists()
    assert not (target / "bin" / "torchrun").exists()
    # Linking again (a venv already seeded) keeps what is there.
    assert link_distributions(source, target, ["torch"]) == ["nvidia-cublas", "torch", "triton"]


def test_link_without_the_distribution_says_what_to_run(tmp_path):
    source = fake_venv(tmp_path / "source", {"torch": (["nvidia-cublas"], {})})
    target = fake_venv(tmp_path / "target", {})
    with pytest.raises(EngineError, match="has no nvidia-cublas to link .*make fork"):
        link_distributions(source, target, ["torch"])
