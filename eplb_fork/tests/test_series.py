"""The README's series table is the series index, rendered."""

from eplb_fork import REPO_ROOT
import pytest

from eplb_fork.__main__ import main
from eplb_fork.series import (
    BACKPORT,
    CURRENT,
    Patch,
    between_lines,
    changelog,
    line_for,
    unchecked_release_notice,
    with_changelog,
)
from eplb_fork.tests.test_apply import make_repo, snapshot


def patch(subject: str, origin: str, applied_upstream: str | None = None) -> Patch:
    return Patch("p", subject, "", origin, applied_upstream, "2026-01-01T00:00:00+00:00", print)


def test_changelog_rows_name_origin_and_upstream_status():
    pr = "https://github.com/vllm-project/vllm/pull/"
    table = changelog(
        [
            patch("[EPLB] A", f"backport, {pr}36261", f"v0.20.0, {pr}36261"),
            patch("[EPLB] B", f"vendor, {pr}40810"),
            patch("[EPLB] C", "vendor"),
        ]
    )
    assert table.splitlines()[2:] == [
        "| 1 | [EPLB] A | backport of #36261 | in v0.20.0 |",
        "| 2 | [EPLB] B | ours (as upstream #40810) | not yet |",
        "| 3 | [EPLB] C | ours | not yet |",
    ]


@pytest.mark.parametrize("line", [BACKPORT, CURRENT], ids=lambda line: line.name)
def test_readme_table_is_each_lines_series(line):
    readme = (REPO_ROOT / "README.md").read_text()
    assert line.markers[0] in readme
    assert with_changelog(readme, changelog(line.patches()), line) == readme


@pytest.mark.parametrize(
    "version,line",
    [("0.18.0", BACKPORT), ("0.19.1", BACKPORT), ("0.20.0", BACKPORT), ("0.24.9", BACKPORT),
     ("0.25.0", CURRENT), ("0.30.0", CURRENT), ("0.34.0", CURRENT), ("1.2.0", CURRENT),
     (None, BACKPORT)],
)  # fmt: skip
def test_a_base_gets_the_line_its_version_falls_in(version, line):
    assert line_for(version) is line


def test_a_release_newer_than_every_pin_is_named_as_unchecked():
    pinned = ["0.19.1", "0.34.0", "0.25.0"]
    notice = unchecked_release_notice("0.35.0", pinned)
    assert notice is not None
    assert notice.startswith(
        "vLLM 0.35.0 is newer than 0.34.0, the newest release this series was checked on"
    )
    for checked in ("0.34.0", "0.30.0", "0.19.1", None):
        assert unchecked_release_notice(checked, pinned) is None


@pytest.mark.parametrize("version", ["0.20.0", "0.22.1", "0.24.0", "0.24.9"])
def test_a_release_between_the_lines_is_named_so(version):
    reason = between_lines(version)
    assert reason is not None
    assert reason == (
        f"vLLM {version} is past the backport line (0.20.0 ships part of it) and before the "
        f"current line (from {CURRENT.first_release}): no line is checked on {version}; "
        "nothing was changed"
    )


@pytest.mark.parametrize("version", [None, "0.17.1", "0.19.1", "0.25.0", "0.34.0", "1.2.0"])
def test_a_release_some_line_is_for_is_not_between_lines(version):
    assert between_lines(version) is None


def test_apply_refuses_a_tree_between_the_lines_before_touching_it(tmp_path, capsys):
    repo = make_repo(tmp_path / "vllm", {"PKG-INFO": "Name: vllm\nVersion: 0.22.0\n"})
    before = snapshot(repo)
    assert main(["apply", "--tree", str(repo.path), "--branch", "eplb"]) == 1
    assert "vLLM 0.22.0 is past the backport line" in capsys.readouterr().err
    assert snapshot(repo) == before
