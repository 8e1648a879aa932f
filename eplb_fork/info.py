"""What the Makefile asks the engine instead of deriving it: the bases worth
testing (from requirements/base.toml and the lines' first releases) and the
files a span of commits adds or edits."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from packaging.version import Version

from eplb_fork.gittree import Repo
from eplb_fork.series import LINES, Line, line_end


def line_releases(line: Line, pinned: Iterable[str], lines: tuple[Line, ...] = LINES) -> list[str]:
    """The pinned releases `line` is for, newest first (Line says which)."""
    end = line_end(line, lines)
    start = Version(line.first_release) if line.first_release else None
    ours = (
        version
        for version in pinned
        if (start is None or Version(version) >= start)
        and (end is None or Version(version) < Version(end))
    )
    return sorted(ours, key=Version, reverse=True)


def bases_to_test(base: str, pinned: Iterable[str], lines: tuple[Line, ...] = LINES) -> list[str]:
    """What `make test-bases` builds: every pinned release some line is for,
    but `base` (built as build/fork), line by line, newest first in each."""
    pinned = list(pinned)
    return [v for line in lines for v in line_releases(line, pinned, lines) if v != base]


def is_test(path: str) -> bool:
    parts = PurePosixPath(path)
    return parts.parts[0] == "tests" and parts.name.startswith("test_") and parts.suffix == ".py"


def touched(
    repo: Repo,
    old: str,
    new: str,
    *,
    python: bool = False,
    tests: bool = False,
    skip: Iterable[str] = (),
) -> list[str]:
    """The files added or edited from `old` to `new`: all, the Python files,
    or the test files, less `skip`."""
    changed = repo.git("diff", "--name-only", "--diff-filter=AM", old, new).splitlines()
    skipped = set(skip)
    return [
        path
        for path in changed
        if path not in skipped
        and (not python or path.endswith(".py"))
        and (not tests or is_test(path))
    ]
