"""The README's series table is the series index, rendered."""

from eplb_fork import REPO_ROOT
from eplb_fork.series import CHANGELOG_BEGIN, Patch, changelog, load_series, with_changelog


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


def test_readme_table_is_the_current_series():
    readme = (REPO_ROOT / "README.md").read_text()
    assert CHANGELOG_BEGIN in readme
    assert with_changelog(readme, changelog(load_series())) == readme
