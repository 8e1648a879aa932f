"""The README's series table is the series index, rendered."""

import pytest

from eplb_fork import REPO_ROOT
from eplb_fork.__main__ import main
from eplb_fork.series import (
    BACKPORT,
    CURRENT,
    Patch,
    changelog,
    line_for,
    unchecked_release_notice,
    with_changelog,
)
from eplb_fork.tests.synthetic import make_repo, snapshot


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
    [("0.18.0", BACKPORT), ("0.19.1", BACKPORT), ("0.19.9", BACKPORT), ("0.20.0", CURRENT),
     ("0.24.9", CURRENT), ("0.25.0", CURRENT), ("0.34.0", CURRENT), ("1.2.0", CURRENT),
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


@pytest.mark.parametrize(
    "version,first_tried",
    [("0.22.0", "eplb_unpadded_tokens"), ("0.25.0", "eplb_clean_window_slots")],
)
def test_a_current_line_tree_gets_the_padding_backport_only_before_upstreams(
    tmp_path, capsys, version, first_tried
):
    """0.20-0.24 get the line's first patch (upstream's 0.25 padding mask,
    backported); from 0.25 it is reported upstream. This tree has none of
    the files, so the first patch tried stops, and nothing changes."""
    repo = make_repo(tmp_path / "vllm", {"PKG-INFO": f"Name: vllm\nVersion: {version}\n"})
    before = snapshot(repo)
    assert main(["apply", "--tree", str(repo.path), "--branch", "eplb"]) == 1
    out, err = capsys.readouterr()
    assert (
        f"series: the current line (series/current/, {CURRENT.purpose}) for vLLM {version}" in out
    )
    skipped = "upstream in v0.25.0" in out
    assert skipped == (version == "0.25.0")
    assert f"{first_tried}: " in err and "nothing was changed" in err
    assert snapshot(repo) == before
