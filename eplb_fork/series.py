"""Loading the series: a line's `series` file lists patch modules in order (as
quilt's series file does); each module carries its own metadata and an
`apply(tree)`, and its docstring is the commit message's body: one
description per patch.

There are two lines. The backport (`series/backport/`) brings PR #36261 and our
follow-ups to releases before the PR shipped. The current line
(`series/current/`) carries the follow-ups on upstream's own code, for
releases from the one its package names as `FIRST_RELEASE` on. A base
gets the line its version falls in (`line_for`).
"""

from __future__ import annotations

import functools
import importlib.util
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from packaging.version import Version

from eplb_fork import REPO_ROOT, EngineError
from eplb_fork.gittree import Identity, Repo

SERIES_DIR = REPO_ROOT / "series"
BACKPORT_DIR = SERIES_DIR / "backport"
CURRENT_DIR = SERIES_DIR / "current"
UPSTREAM_PR = "https://github.com/vllm-project/vllm/pull/{}"
# Names the patch in each commit the series makes, so a tree that holds our
# commits (rebased or not) is recognised without comparing code.
PATCH_TRAILER = "EPLB-Patch"


@dataclass(frozen=True)
class Patch:
    name: str
    subject: str
    body: str
    origin: str  # DEP-3: "backport, <url>" for upstream work, "vendor" for ours
    applied_upstream: str | None  # DEP-3: the release and change that has it
    date: str
    apply: Callable[[object], None]
    # The earlier patch of the line whose code this one fixes (its name).
    fixes: str | None = None

    def message(self, author: Identity, fixed: tuple[str, str] | None = None) -> str:
        """The commit message; `fixed` is the commit and subject of the patch
        this one fixes, for a kernel-style `Fixes:` trailer."""
        paragraphs = textwrap.dedent(self.body).strip().split("\n\n")
        wrapped = "\n\n".join(_wrap_paragraph(p) for p in paragraphs)
        trailers = [f'Fixes: {fixed[0][:12]} ("{fixed[1]}")'] if fixed else []
        trailers.append(f"Origin: {self.origin}")
        if self.applied_upstream:
            trailers.append(f"Applied-Upstream: {self.applied_upstream}")
        else:
            # DEP-3: anything but "no" or "not-needed" means it was sent upstream.
            trailers.append("Forwarded: no")
        trailers.append(f"{PATCH_TRAILER}: {self.name}")
        trailers.append(f"Signed-off-by: {author.name} <{author.email}>")
        return f"{self.subject}\n\n{wrapped}\n\n" + "\n".join(trailers) + "\n"

    @property
    def upstream_version(self) -> str | None:
        """ "v0.20.0, <url>" -> "0.20.0"."""
        if not self.applied_upstream:
            return None
        return self.applied_upstream.split(",")[0].strip().removeprefix("v")

    def identity(self, author: Identity) -> Identity:
        return Identity(author.name, author.email, self.date)


def _wrap_paragraph(paragraph: str) -> str:
    lines = paragraph.splitlines()
    # Lists, tables and indented blocks keep their own layout.
    if any(line.lstrip().startswith(("- ", "* ", "|")) or line.startswith("  ") for line in lines):
        return paragraph
    return textwrap.fill(" ".join(line.strip() for line in lines), width=72)


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"series_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REQUIRED = ("SUBJECT", "ORIGIN", "DATE", "apply")


def load_patch(path: Path) -> Patch:
    module = _load_module(path)
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if not module.__doc__:
        missing.append("a docstring (the commit body)")
    if missing:
        raise EngineError(f"series/{path.name} lacks {', '.join(missing)}")
    return Patch(
        name=path.stem,
        subject=module.SUBJECT,
        body=module.__doc__,
        origin=module.ORIGIN,
        applied_upstream=getattr(module, "APPLIED_UPSTREAM", None),
        date=module.DATE,
        apply=module.apply,
        fixes=getattr(module, "FIXES", None),
    )


def patch_commits(repo: Repo, tip: str, since: str | None = None) -> dict[str, str]:
    """The patches whose commits are in the history of `tip` (back to
    `since`), by name, each with its newest commit."""
    return repo.trailer_values(PATCH_TRAILER, tip, since)


def series_author(series_dir: Path = SERIES_DIR) -> Identity:
    module = _load_module(series_dir / "__init__.py")
    return Identity(module.AUTHOR_NAME, module.AUTHOR_EMAIL, "")


def load_series(series_dir: Path = BACKPORT_DIR) -> list[Patch]:
    index = series_dir / "series"
    inside = series_dir.is_relative_to(REPO_ROOT)
    where = series_dir.relative_to(REPO_ROOT) if inside else series_dir
    names = [line.split("#", 1)[0].strip() for line in index.read_text().splitlines()]
    patches = []
    for name in filter(None, names):
        path = series_dir / f"{name}.py"
        if not path.exists():
            raise EngineError(f"{where}/series lists {name}, but {where}/{name}.py is missing")
        patches.append(load_patch(path))
    return patches


@dataclass(frozen=True)
class Line:
    """One line of the series: where it lives, what it is for, and where
    its table sits in the README. Its releases run from the FIRST_RELEASE
    its folder's `__init__.py` names (from the oldest, if none) up to the
    next line's first (the last line has no end: a newer release is named
    as unchecked, then tried). A patch of the line that upstream ships
    inside that span (its Applied-Upstream) is reported upstream and
    skipped from that release on: the rest of the line is written to apply
    on both sides of it."""

    name: str
    directory: Path
    purpose: str
    markers: tuple[str, str]

    def patches(self) -> list[Patch]:
        return load_series(self.directory)

    @property
    def first_release(self) -> str | None:
        return getattr(self._facts, "FIRST_RELEASE", None)

    # Its GPU run (eplb_fork/gpu_bundle.py): the router revisions its
    # benchmarks compare besides the release's and the tip, by name; the
    # memcheck's pytest arguments (all kernel tests if none); the benchmark
    # commands, run from the bundle.
    @property
    def gpu_revisions(self) -> dict[str, str]:
        return dict(getattr(self._facts, "GPU_REVISIONS", {}))

    @property
    def gpu_memcheck(self) -> tuple[str, ...]:
        return tuple(getattr(self._facts, "GPU_MEMCHECK", ()))

    @property
    def gpu_benchmarks(self) -> tuple[tuple[str, ...], ...]:
        return tuple(map(tuple, getattr(self._facts, "GPU_BENCHMARKS", ())))

    @functools.cached_property
    def _facts(self) -> ModuleType:
        # Loaded once per Line: the Makefile's queries ask several facts.
        return _load_module(self.directory / "__init__.py")

    def describe(self, version: str | None) -> str:
        where = self.directory.relative_to(REPO_ROOT)
        base = f"vLLM {version}" if version else "a base of unknown version"
        return f"{self.name} line ({where}/, {self.purpose}) for {base}"


def _line_markers(title: str) -> tuple[str, str]:
    return (
        f"<!-- {title}changelog: generated by `make changelog` -->",
        f"<!-- end of {title}changelog -->",
    )


# Oldest first: a base gets the last line whose first release it has reached.
BACKPORT = Line("backport", BACKPORT_DIR, "PR #36261 and our follow-ups", _line_markers("series "))
CURRENT = Line(
    "current",
    CURRENT_DIR,
    "our follow-ups on upstream's code",
    _line_markers("current-line series "),
)
LINES = (BACKPORT, CURRENT)


def unchecked_release_notice(version: str | None, pinned: Iterable[str]) -> str | None:
    """What to tell a user whose base is newer than every release the series
    was checked on (those pinned in requirements/base.toml); None otherwise.
    The line is still tried: a missing anchor stops it with the tree as it
    was."""
    if not version:
        return None
    newest = max(pinned, key=Version)
    if Version(version) <= Version(newest):
        return None
    return (
        f"vLLM {version} is newer than {newest}, the newest release this series "
        f"was checked on: trying the line anyway"
    )


def line_end(line: Line, lines: tuple[Line, ...] = LINES) -> str | None:
    """The first release past `line`'s: the next line's first; None for the
    last line."""
    later = lines[lines.index(line) + 1 :]
    return later[0].first_release if later else None


def line_for(version: str | None, lines: tuple[Line, ...] = LINES) -> Line:
    """The last line whose first release `version` has reached; the oldest
    line where the version is unknown (a checkout without one)."""
    chosen = lines[0]
    for line in lines[1:]:
        if version and Version(version) >= Version(line.first_release):
            chosen = line
    return chosen


def _pr_number(field: str) -> str | None:
    url = field.split(",", 1)[1].strip() if "," in field else ""
    return url.rsplit("/", 1)[-1] if "/pull/" in url else None


def origin_text(patch: Patch) -> str:
    """ "backport of #36261", "ours (as upstream #40810)" or "ours"."""
    pr = _pr_number(patch.origin)
    if patch.origin.startswith("backport"):
        return f"backport of #{pr}"
    return f"ours (as upstream #{pr})" if pr else "ours"


def upstream_text(patch: Patch) -> str:
    return f"in v{patch.upstream_version}" if patch.upstream_version else "not yet"


def changelog(patches: list[Patch]) -> str:
    """The series as a markdown table: subject, origin, upstream status."""
    rows = ["| # | subject | origin | upstream |", "|---|---|---|---|"]
    for number, patch in enumerate(patches, 1):
        rows.append(
            f"| {number} | {patch.subject} | {origin_text(patch)} | {upstream_text(patch)} |"
        )
    return "\n".join(rows) + "\n"


def with_changelog(readme: str, table: str, line: Line = BACKPORT) -> str:
    """`readme` with the text between `line`'s changelog markers replaced."""
    begin, end = line.markers
    try:
        head, rest = readme.split(begin + "\n", 1)
        _, tail = rest.split(end, 1)
    except ValueError:
        raise EngineError(f"README.md lacks the markers {begin} ... {end}") from None
    return f"{head}{begin}\n{table}{end}{tail}"
