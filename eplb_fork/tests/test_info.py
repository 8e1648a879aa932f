"""The facts the Makefile asks the engine for."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eplb_fork.__main__ import main
from eplb_fork.apply import already_upstream, apply_series
from eplb_fork.base import load_pins
from eplb_fork.info import bases_to_test, line_releases, touched
from eplb_fork.series import BACKPORT, CURRENT, LINES, Line, load_series
from eplb_fork.tests.synthetic import AUTHOR, CONFIG, SERIES, commit_all, make_repo


def shipped_in(version: str):
    return replace(SERIES[0], applied_upstream=f"v{version}, url")


def fake_line(tmp_path, name, first_release, patches):
    """A line whose folder names `first_release`, with `patches` as its series."""
    folder = tmp_path / name
    folder.mkdir()
    text = f"FIRST_RELEASE = {first_release!r}\n" if first_release else ""
    (folder / "__init__.py").write_text(text)
    line = Line(name, folder, "a test line", ("<!-- b -->", "<!-- e -->"))
    object.__setattr__(line, "patches", lambda: patches)  # the series, without files
    return line


def test_a_lines_releases_run_up_to_the_next_lines_first(tmp_path):
    """A patch upstream ships inside a line's span does not end it: from that
    release on it is reported upstream and skipped."""
    old = fake_line(tmp_path, "old", None, [shipped_in("0.20.0"), SERIES[2]])
    new = fake_line(tmp_path, "new", "0.20.0", [shipped_in("0.25.0"), SERIES[2]])
    pinned = ["0.18.0", "0.19.1", "0.20.0", "0.19.0", "0.21.0", "0.25.0", "0.26.0", "0.24.0"]
    lines = (old, new)
    assert line_releases(old, pinned, lines) == ["0.19.1", "0.19.0", "0.18.0"]
    assert line_releases(new, pinned, lines) == ["0.26.0", "0.25.0", "0.24.0", "0.21.0", "0.20.0"]
    assert bases_to_test("0.19.1", pinned, lines) == [
        "0.19.0", "0.18.0", "0.26.0", "0.25.0", "0.24.0", "0.21.0", "0.20.0"
    ]  # fmt: skip
    assert [already_upstream(p, "0.24.0") for p in new.patches()] == [False, False]
    assert [already_upstream(p, "0.25.0") for p in new.patches()] == [True, False]


def test_the_pins_and_lines_give_the_bases_make_test_checks():
    default, releases = load_pins()
    assert line_releases(BACKPORT, releases) == [
        default, "0.19.0", "0.18.1", "0.18.0", "0.17.1", "0.17.0"
    ]  # fmt: skip
    assert line_releases(CURRENT, releases) == [
        "0.34.0", "0.33.0", "0.32.0", "0.31.0", "0.30.0", "0.29.0", "0.28.0", "0.27.1",
        "0.27.0", "0.26.0", "0.25.1", "0.25.0", "0.24.0", "0.23.0", "0.22.1", "0.22.0",
        "0.21.0", "0.20.2", "0.20.1", "0.20.0",
    ]  # fmt: skip
    assert bases_to_test(default, releases) == [
        v for line in LINES for v in line_releases(line, releases) if v != default
    ]
    # PR #36261's three commits ship in the current line's first release.
    first = CURRENT.first_release
    assert sum(already_upstream(p, first) for p in load_series()) >= 3


def test_touched_lists_added_and_edited_files_by_kind(tmp_path):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG, "gone.py": "x = 1\n"})
    base = repo.head()
    for path, text in {
        "config.py": CONFIG + "# edited\n",
        "tests/kernels/test_new.py": "t = 1\n",
        "tests/kernels/test_cuda.py": "t = 1\n",
        "tests/kernels/helpers.py": "h = 1\n",
        "notes.md": "notes\n",
    }.items():
        (repo.path / path).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / path).write_text(text)
    (repo.path / "gone.py").unlink()
    commit_all(repo, "change")
    python = touched(repo, base, "HEAD", python=True)
    assert sorted(python) == [
        "config.py",
        "tests/kernels/helpers.py",
        "tests/kernels/test_cuda.py",
        "tests/kernels/test_new.py",
    ]
    tests = touched(repo, base, "HEAD", tests=True, skip=["tests/kernels/test_cuda.py"])
    assert tests == ["tests/kernels/test_new.py"]


def test_revision_finds_a_patch_by_its_trailer(tmp_path, capsys):
    repo = make_repo(tmp_path / "t", {"config.py": CONFIG})
    named = replace(SERIES[2], name="eplb_config_positive")
    apply_series(repo, [named], AUTHOR)
    (repo.path / "later.py").write_text("later = 1\n")
    commit_all(repo, "[EPLB] Require positive window size and intervals")  # no trailer
    capsys.readouterr()
    assert main(["--fork", str(repo.path), "revision", "eplb_config_positive"]) == 0
    assert capsys.readouterr().out.strip() == repo.git("rev-parse", "HEAD~1")
    assert main(["--fork", str(repo.path), "revision", "fused_map_record_kernel"]) == 1
    assert "no commit" in capsys.readouterr().err
    assert main(["--fork", str(repo.path), "revision", "no_such_patch"]) == 1
    assert "not a patch of the series" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fact", "expected"),
    [
        ("base-tag", "base/v0.19.1"),
        (
            "bases",
            "0.19.0 0.18.1 0.18.0 0.17.1 0.17.0 0.34.0 0.33.0 0.32.0 0.31.0 0.30.0 0.29.0 0.28.0 0.27.1 "
            "0.27.0 0.26.0 0.25.1 0.25.0 0.24.0 0.23.0 0.22.1 0.22.0 0.21.0 0.20.2 0.20.1 "
            "0.20.0",
        ),
    ],
)
def test_info_prints_one_fact(fact, expected, capsys):
    assert main(["--base", "0.19.1", "info", fact]) == 0
    assert capsys.readouterr().out == f"{expected}\n"


def test_every_pinned_release_has_exactly_one_line():
    _, releases = load_pins()
    for version in releases:
        covered = [line for line in LINES if version in line_releases(line, releases)]
        assert len(covered) == 1, version
