"""Re-applying: our own commits are recognised by their patch trailer, so a
series applies once on a tree that holds some or all of it, whatever was
committed on top, and a commit that only looks like ours is not taken."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eplb_fork import EngineError
from eplb_fork.apply import apply_series
from eplb_fork.tests.synthetic import (
    AUTHOR,
    CONFIG,
    SERIES,
    commit_all,
    constrain_patch,
    make_repo,
    snapshot,
    statuses,
)


def test_each_commit_names_its_patch_in_a_trailer(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    apply_series(repo, [constrain_patch("one", "window_size")], AUTHOR)
    trailer = repo.git("log", "-1", "--format=%(trailers:key=EPLB-Patch,valueonly)")
    assert trailer == "one"


def test_a_fix_names_the_commit_it_fixes_in_a_fixes_trailer(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    first = constrain_patch("one", "window_size")
    fix = replace(constrain_patch("two", "step_interval"), fixes="one")
    apply_series(repo, [first, fix], AUTHOR)
    fixed = repo.git("rev-parse", "HEAD~1")
    trailer = repo.git("log", "-1", "--format=%(trailers:key=Fixes,valueonly)")
    assert trailer == f'{fixed[:12]} ("[EPLB] one")'
    # Applied later onto a tree that holds the fixed commit, it names that one.
    again = make_repo(tmp_path / "u", {"config.py": CONFIG})
    apply_series(again, [first], AUTHOR)
    held = again.head()
    apply_series(again, [first, fix], AUTHOR)
    assert again.git("log", "-1", "--format=%(trailers:key=Fixes,valueonly)") == (
        f'{held[:12]} ("[EPLB] one")'
    )


def test_a_fix_of_no_patch_of_the_line_is_refused_before_anything_moves(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    before = snapshot(repo)
    fix = replace(constrain_patch("two", "step_interval"), fixes="nowhere")
    with pytest.raises(EngineError, match="fixes nowhere, which is not an earlier patch of its line"):
        apply_series(repo, [fix], AUTHOR)
    assert snapshot(repo) == before


def test_reapplying_the_whole_series_changes_nothing(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    apply_series(repo, SERIES, AUTHOR)
    commits = repo.git("rev-list", "HEAD").splitlines()
    before = snapshot(repo)
    lines: list[str] = []
    outcomes = apply_series(repo, SERIES, AUTHOR, say=lines.append)
    assert statuses(outcomes) == ["already applied"] * 3
    assert snapshot(repo) == before
    # Each line names the commit that holds the patch.
    assert [line.split()[0] for line in lines] == [c[:12] for c in reversed(commits[:3])]


def test_reapplying_onto_a_new_branch_only_adds_the_branch(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    apply_series(repo, SERIES, AUTHOR)
    head = repo.head()
    outcomes = apply_series(repo, SERIES, AUTHOR, branch="again")
    assert statuses(outcomes) == ["already applied"] * 3
    assert repo.current_branch() == "again"
    assert repo.head() == head == repo.git("rev-parse", "main")


@pytest.mark.parametrize("held", [1, 2])
def test_a_tree_holding_the_first_patches_gets_the_rest(tmp_path, held):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    apply_series(repo, SERIES[:held], AUTHOR)
    start = repo.head()
    outcomes = apply_series(repo, SERIES, AUTHOR)
    assert statuses(outcomes) == ["already applied"] * held + ["applied"] * (3 - held)
    assert repo.git("rev-list", "--count", f"{start}..HEAD") == str(3 - held)
    assert (repo.path / "notes.py").read_text() == "LIMIT = 2\n"
    assert "Field(default=1000, gt=0)" in (repo.path / "config.py").read_text()


def test_fork_commits_on_top_of_ours_do_not_hide_them(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    apply_series(repo, SERIES, AUTHOR)
    (repo.path / "notes.py").write_text("LIMIT = 3  # the fork's own limit\n")
    (repo.path / "fork.py").write_text("fork = True\n")
    commit_all(repo, "fork: tune the limit, add a module")
    before = snapshot(repo)
    assert statuses(apply_series(repo, SERIES, AUTHOR)) == ["already applied"] * 3
    assert snapshot(repo) == before


def test_a_rebased_copy_of_our_commits_is_recognised(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    base = repo.head()
    apply_series(repo, SERIES, AUTHOR, branch="ours")
    repo.git("checkout", "--quiet", "-b", "fork", base)
    (repo.path / "fork.py").write_text("fork = True\n")
    commit_all(repo, "fork: a module of its own")
    repo.git("cherry-pick", f"{base}..ours", env=AUTHOR.env())
    ours = repo.git("rev-list", f"{base}..ours").splitlines()
    rebased = repo.git("rev-list", f"{base}..fork").splitlines()
    assert not set(ours) & set(rebased)
    before = snapshot(repo)
    assert statuses(apply_series(repo, SERIES, AUTHOR)) == ["already applied"] * 3
    assert snapshot(repo) == before


def test_a_commit_with_our_subject_but_no_trailer_is_not_ours(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    (repo.path / "other.py").write_text("other = 1\n")
    # The body names the patch, but not in a trailer block (the last paragraph).
    commit_all(
        repo, "[EPLB] bring\n\nEPLB-Patch: bring\nquoted in the body.\n\nSomeone else's change."
    )
    outcomes = apply_series(repo, SERIES, AUTHOR)
    assert statuses(outcomes) == ["applied"] * 3
    assert (repo.path / "notes.py").read_text() == "LIMIT = 2\n"


def test_history_before_the_base_is_not_searched(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    apply_series(repo, SERIES[:1], AUTHOR)
    (repo.path / "notes.py").unlink()
    commit_all(repo, "fork: drop the notes")
    base = repo.head()
    outcomes = apply_series(repo, SERIES[:2], AUTHOR, since=base)
    assert statuses(outcomes) == ["applied"] * 2
