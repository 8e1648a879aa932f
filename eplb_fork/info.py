"""What the Makefile asks the engine instead of deriving it: the bases worth
testing (from requirements/base.toml and the series' Applied-Upstream
metadata) and the files a span of commits adds or edits."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from packaging.version import Version

from eplb_fork import EngineError
from eplb_fork.apply import already_upstream
from eplb_fork.gittree import Repo
from eplb_fork.series import Patch, current_line_start


def upstream_release(patches: list[Patch]) -> str:
    """The first release that ships part of the series."""
    shipped = [patch.upstream_version for patch in patches if patch.upstream_version]
    if not shipped:
        raise EngineError("no patch of the series is Applied-Upstream in a release")
    return min(shipped, key=Version)


def other_bases(patches: list[Patch], base: str, pinned: Iterable[str]) -> list[str]:
    """The pinned releases besides `base` that the whole series applies to:
    those before the first release that ships part of it, newest first."""
    first = Version(upstream_release(patches))
    older = (version for version in pinned if version != base and Version(version) < first)
    return sorted(older, key=Version, reverse=True)


def current_line_bases(base: str, pinned: Iterable[str]) -> list[str]:
    """The pinned releases of the current line besides `base`, newest first."""
    start = Version(current_line_start())
    newer = (version for version in pinned if version != base and Version(version) >= start)
    return sorted(newer, key=Version, reverse=True)


def upstream_count(patches: list[Patch], base: str) -> int:
    return sum(already_upstream(patch, base) for patch in patches)


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
