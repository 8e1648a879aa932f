"""Small synthetic forks for the engine's tests: a git repo holding a
config file, and patches as small as they come (one field bound, one text
written over another), each applied the way the series' patches are."""

from __future__ import annotations

import textwrap
from pathlib import Path

from eplb_fork.codemod import AnchorMissing, Conflict, constrain_field, python_file
from eplb_fork.gittree import Identity, Repo
from eplb_fork.series import Patch

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
