"""The engine on small synthetic trees: atomic, idempotent, deterministic."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from eplb_fork import EngineError
from eplb_fork.apply import apply_series
from eplb_fork.codemod import bring_file
from eplb_fork.series import BACKPORT_DIR, Patch, load_patch, load_series
from eplb_fork.tests.synthetic import (
    AUTHOR,
    CONFIG,
    constrain_patch,
    make_repo,
    snapshot,
)


def test_applies_each_patch_as_a_signed_off_commit(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    outcomes = apply_series(repo, [constrain_patch("one", "window_size")], AUTHOR)
    assert [o.status for o in outcomes] == ["applied"]
    assert "window_size: int = Field(default=1000, gt=0)" in (repo.path / "config.py").read_text()
    message = repo.git("log", "-1", "--format=%B")
    assert message.startswith("[EPLB] one\n\nBody.")
    assert "Signed-off-by: Test Maintainer <test@example.org>" in message
    assert "Origin: vendor" in message
    assert repo.git("status", "--porcelain") == ""


def test_missing_anchor_names_it_and_changes_nothing(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    before = snapshot(repo)
    series = [constrain_patch("good", "window_size"), constrain_patch("bad", "no_such_field")]
    with pytest.raises(EngineError) as info:
        apply_series(repo, series, AUTHOR)
    assert "EPLBConfig.no_such_field not found in config.py" in str(info.value)
    assert "bad" in str(info.value)
    # The first patch succeeded in the draft, yet nothing was published.
    assert snapshot(repo) == before


def test_real_first_patch_names_its_anchor(tmp_path):
    without_window = CONFIG.replace('    window_size: int = 1000\n    """Window."""\n', "")
    repo = make_repo(tmp_path / "t", {"vllm/config/parallel.py": without_window})
    before = snapshot(repo)
    with pytest.raises(EngineError, match=r"EPLBConfig\.window_size not found in "
                       r"vllm/config/parallel\.py"):  # fmt: skip
        apply_series(repo, [load_patch(BACKPORT_DIR / "eplb_config_positive.py")], AUTHOR)
    assert snapshot(repo) == before


def test_reapplying_reports_already_applied_without_commit(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    series = [constrain_patch("one", "window_size"), constrain_patch("two", "step_interval")]
    apply_series(repo, series, AUTHOR)
    head = repo.head()
    lines: list[str] = []
    outcomes = apply_series(repo, series, AUTHOR, say=lines.append)
    assert [o.status for o in outcomes] == ["already applied", "already applied"]
    assert repo.head() == head
    assert all("already applied" in line for line in lines)


def test_two_builds_give_identical_commit_ids(tmp_path):
    series = [constrain_patch("one", "window_size"), constrain_patch("two", "step_interval")]
    heads = []
    for name in ("a", "b"):
        repo = make_repo(tmp_path / name, {"config.py": CONFIG})
        apply_series(repo, series, AUTHOR)
        heads.append(repo.head())
    assert heads[0] == heads[1]


def test_brought_file_never_overwrites_a_different_one(tmp_path):
    ours = "tests/config/test_eplb_config_bounds.py"
    repo = make_repo(tmp_path / "t", {ours: "# the fork's own, different test\n"})
    before = snapshot(repo)

    def apply(tree):
        bring_file(tree, ours)

    patch = Patch("bring", "[EPLB] bring", "Body.", "vendor", None, "2026-03-31T12:00:00Z", apply)
    with pytest.raises(EngineError, match="already exists .* not overwriting"):
        apply_series(repo, [patch], AUTHOR)
    assert snapshot(repo) == before


def test_dirty_tree_is_refused(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    (repo.path / "config.py").write_text(CONFIG + "# local edit\n")
    with pytest.raises(EngineError, match="uncommitted changes"):
        apply_series(repo, [constrain_patch("one", "window_size")], AUTHOR)
    assert (repo.path / "config.py").read_text().endswith("# local edit\n")


def test_new_branch_mode_leaves_the_original_branch(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    main_before = repo.head()
    apply_series(repo, [constrain_patch("one", "window_size")], AUTHOR, branch="eplb")
    assert repo.current_branch() == "eplb"
    assert repo.git("rev-parse", "main") == main_before
    assert repo.git("rev-parse", "eplb^") == main_before


def test_cli_reports_refusal_without_traceback(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    (repo.path / "config.py").write_text("changed\n")
    result = subprocess.run(
        [sys.executable, "-m", "eplb_fork", "apply", "--tree", str(repo.path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_series_index_loads_with_complete_metadata():
    patches = load_series()
    assert patches, "series/backport/series lists no patches"
    for patch in patches:
        assert patch.subject.startswith(("[EPLB] ", "[Config] ")), patch.subject
        assert len(patch.subject) <= 72
        assert patch.origin.startswith(("backport, ", "vendor"))


def test_patches_upstream_in_the_base_release_are_reported_not_applied(tmp_path):

    from eplb_fork.apply import tree_version

    repo = make_repo(tmp_path / "t", {"config.py": CONFIG, "PKG-INFO": "Version: 0.20.0\n"})
    upstreamed = replace(constrain_patch("one", "window_size"), applied_upstream="v0.20.0, url")
    ours = constrain_patch("two", "step_interval")
    assert tree_version(repo) == "0.20.0"
    outcomes = apply_series(repo, [upstreamed, ours], AUTHOR, base_version=tree_version(repo))
    assert [o.status for o in outcomes] == ["upstream in v0.20.0", "applied"]
    text = (repo.path / "config.py").read_text()
    assert "window_size: int = 1000" in text  # left to upstream, not edited
    assert "step_interval: int = Field(default=3000, gt=0)" in text
    assert repo.git("rev-list", "--count", "HEAD") == "2"  # base + one commit

    older = make_repo(tmp_path / "o", {"config.py": CONFIG})
    outcomes = apply_series(older, [upstreamed], AUTHOR, base_version="0.19.1")
    assert [o.status for o in outcomes] == ["applied"]


def test_refusal_reports_each_earlier_patch(tmp_path):

    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    upstreamed = replace(constrain_patch("one", "window_size"), applied_upstream="v0.20.0, url")
    series = [upstreamed, constrain_patch("two", "step_interval"), constrain_patch("bad", "nope")]
    with pytest.raises(EngineError) as info:
        apply_series(repo, series, AUTHOR, base_version="0.20.0")
    message = str(info.value)
    assert re.search(r"upstream in v0\.20\.0 +one\n", message)
    assert re.search(r"\n  applied +two", message)
    assert "EPLBConfig.nope not found" in message
