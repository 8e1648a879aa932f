"""A fork's GPU bundle: the files gpu_standalone loads, each revision's
router read back from the commit the line names, and the line's run."""

from __future__ import annotations

import json

import pytest

from eplb_fork import EngineError
from eplb_fork.apply import apply_series
from eplb_fork.base import Release
from eplb_fork.baserepo import base_tag
from eplb_fork.fork_files import BASE_ROUTER, EPLB_TRITON
from eplb_fork.gittree import Repo
from eplb_fork.gpu_bundle import HELPERS, make_bundle
from eplb_fork.series import LINES, Line, Patch
from eplb_fork.tests.synthetic import AUTHOR, make_repo

TEST = "tests/kernels/moe/test_eplb_thing.py"
RELEASE = Release("9.9.9", "", "", "", "", "")


def router_patch(name: str, text: str, also: dict[str, str] | None = None) -> Patch:
    def apply(tree):
        tree.write(BASE_ROUTER, text)
        for path, content in (also or {}).items():
            tree.write(path, content)

    return Patch(name, f"[EPLB] {name}", "Body.", "ours", None, "2026-03-31T12:00:00+00:00", apply)


def fork_of(tmp_path, files) -> Repo:
    repo = make_repo(tmp_path / "fork", {BASE_ROUTER: "# release\n", **files})
    repo.git("tag", base_tag(RELEASE))
    patches = [
        router_patch("first", "# first\n", {TEST: "# a kernel test\n"}),
        router_patch("second", "# second\n"),
        router_patch("third", "# third\n"),
    ]
    apply_series(repo, patches, AUTHOR, branch="fork", base_version=RELEASE.version)
    return repo


def line_of(tmp_path, facts: str) -> Line:
    folder = tmp_path / "line"
    folder.mkdir()
    (folder / "__init__.py").write_text(facts)
    return Line("test", folder, "a test line", ("<!-- b -->", "<!-- e -->"))


FACTS = (
    'GPU_REVISIONS = {"early": "first"}\n'
    'GPU_BENCHMARKS = (("benchmarks/kernels/b.py", "--csv={out}/b.csv"),)\n'
)


def test_each_revision_is_the_router_at_the_patch_the_line_names(tmp_path):
    fork = fork_of(tmp_path, {"vllm/other.py": "# not loaded\n"})
    dest = tmp_path / "bundle"
    (dest / "stale").mkdir(parents=True)
    files = make_bundle(fork, RELEASE, line_of(tmp_path, FACTS), dest)
    revisions = {p.stem: p.read_text() for p in (dest / "revisions").glob("*.py")}
    assert revisions == {"base": "# release\n", "early": "# first\n", "head": "# third\n"}
    assert (dest / BASE_ROUTER).read_text() == "# third\n"
    assert (dest / TEST).read_text() == "# a kernel test\n"
    assert not (dest / "vllm/other.py").exists() and not (dest / "stale").exists()
    # The fork has no benchmarks: this repo's, which its line's may import.
    for helper in HELPERS.glob("*.py"):
        assert (dest / "benchmarks/kernels" / helper.name).read_text() == helper.read_text()
    manifest = json.loads((dest / "bundle.json").read_text())
    first = fork.git("log", "--format=%H", "--grep=first", "-1")
    assert manifest["revisions"]["early"] == first
    assert manifest["revisions"]["head"] == fork.head()
    assert manifest["benchmarks"] == [["benchmarks/kernels/b.py", "--csv={out}/b.csv"]]
    assert manifest["memcheck"] == [] and manifest["line"] == "test"
    assert sorted(files) == sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def test_a_release_with_the_shared_kernel_file_carries_it_per_revision(tmp_path):
    fork = fork_of(tmp_path, {EPLB_TRITON: "# shared kernel\n"})
    dest = tmp_path / "bundle"
    make_bundle(fork, RELEASE, line_of(tmp_path, FACTS), dest)
    names = sorted(p.name for p in (dest / "revisions").glob("*_eplb_triton.py"))
    assert names == ["base_eplb_triton.py", "early_eplb_triton.py", "head_eplb_triton.py"]


def test_a_revision_the_fork_lacks_is_refused_before_anything_is_written(tmp_path):
    fork = fork_of(tmp_path, {})
    dest = tmp_path / "bundle"
    (dest / "kept").mkdir(parents=True)
    line = line_of(tmp_path, 'GPU_REVISIONS = {"gone": "fourth"}\n')
    with pytest.raises(EngineError, match="no commit of fourth"):
        make_bundle(fork, RELEASE, line, dest)
    assert (dest / "kept").is_dir()


def test_both_lines_name_patches_of_their_own_series():
    for line in LINES:
        names = {patch.name for patch in line.patches()}
        assert line.gpu_revisions and set(line.gpu_revisions.values()) <= names, line.name
        assert {"base", "head"}.isdisjoint(line.gpu_revisions)
        for command in line.gpu_benchmarks:
            assert command and command[0].endswith(".py"), line.name
