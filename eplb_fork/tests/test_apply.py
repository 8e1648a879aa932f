"""The engine on small synthetic trees: atomic, idempotent, deterministic."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from eplb_fork import EngineError
from eplb_fork.apply import apply_series
from eplb_fork.codemod import AnchorMissing, Conflict, bring_file, constrain_field, python_file
from eplb_fork.gittree import Identity, Repo
from eplb_fork.series import BACKPORT_DIR, Patch, load_patch, load_series

AUTHOR = Identity("Test Maintainer", "test@example.org", "")

CONFIG = textwrap.dedent(
    '''\
    from pydantic import Field


    class EPLBConfig:
        """Config."""

        window_size: int = 1000
        """Window."""
        step_interval: int = 3000
        num_redundant_experts: int = Field(default=0, ge=0)
        log_balancedness_interval: int = 1
    '''
)


FORK_AUTHOR = {**AUTHOR.env(), "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
               "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}  # fmt: skip


def make_repo(path: Path, files: dict[str, str]) -> Repo:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    repo = Repo(path)
    repo.git("init", "--quiet", "--initial-branch=main")
    repo.git("add", "--all")
    repo.git("commit", "--quiet", "-m", "base", env=FORK_AUTHOR)
    return repo


def snapshot(repo: Repo) -> tuple[str, str, str, dict[str, str]]:
    files = {
        str(p.relative_to(repo.path)): p.read_text()
        for p in sorted(repo.path.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }
    branches = repo.git("for-each-ref", "--format=%(refname) %(objectname)")
    return repo.head(), branches, repo.git("status", "--porcelain"), files


def constrain_patch(name: str, field: str, date: str = "2026-03-31T12:00:00+00:00") -> Patch:
    def apply(tree):
        with python_file(tree, "config.py") as src:
            constrain_field(src, f"EPLBConfig.{field}", gt=0)

    return Patch(name, f"[EPLB] {name}", "Body.", "vendor", None, date, apply)


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
    from dataclasses import replace

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
    from dataclasses import replace

    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    upstreamed = replace(constrain_patch("one", "window_size"), applied_upstream="v0.20.0, url")
    series = [upstreamed, constrain_patch("two", "step_interval"), constrain_patch("bad", "nope")]
    with pytest.raises(EngineError) as info:
        apply_series(repo, series, AUTHOR, base_version="0.20.0")
    message = str(info.value)
    assert re.search(r"upstream in v0\.20\.0 +one\n", message)
    assert re.search(r"\n  applied +two", message)
    assert "EPLBConfig.nope not found" in message


# --------------------------------------------------------------------------
# Re-applying: our own commits are recognised by their patch trailer


def text_patch(name: str, path: str, old: str | None, new: str) -> Patch:
    """Writes `new` into `path` (over `old`, which must be there, if given):
    like a real patch, it conflicts once a later patch changed its code."""

    def apply(tree):
        text = tree.read(path) if tree.exists(path) else ""
        if new in text:
            return
        if old is None and text:
            raise Conflict(f"{path} already exists with other contents")
        if old is not None and old not in text:
            raise AnchorMissing(repr(old), path)
        tree.write(path, text.replace(old, new) if old is not None else new)

    return Patch(name, f"[EPLB] {name}", "Body.", "vendor", None, "2026-03-31T12:00:00Z", apply)


# The second patch rewrites the first one's code, so the first no longer
# applies cleanly on a tree that holds both: only the trailer tells.
SERIES = [
    text_patch("bring", "notes.py", None, "LIMIT = 1\n"),
    text_patch("raise", "notes.py", "LIMIT = 1", "LIMIT = 2"),
    constrain_patch("bound", "window_size"),
]


def commit_all(repo: Repo, message: str) -> None:
    repo.git("add", "--all")
    repo.git("commit", "--quiet", "-m", message, env=FORK_AUTHOR)


def statuses(outcomes) -> list[str]:
    return [outcome.status for outcome in outcomes]


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
