"""Git plumbing for atomic series application.

A `Draft` builds commits off to the side: file contents go into the object
store, the tree is assembled in a scratch index, commits are made with
`commit-tree`. Neither HEAD, the branch, the real index nor the worktree moves
until the caller publishes the final commit, so a patch that fails half-way
leaves the user's tree exactly as it was.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eplb_fork import EngineError


@dataclass(frozen=True)
class Identity:
    name: str
    email: str
    date: str  # ISO 8601; fixed so rebuilding gives identical commit ids

    def env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_AUTHOR_DATE": self.date,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
            "GIT_COMMITTER_DATE": self.date,
        }


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def git(
        self,
        *args: str,
        stdin: str | bytes | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> str:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        result = subprocess.run(
            ["git", "-C", str(self.path), *args],
            input=data,
            capture_output=True,
            env={**os.environ, **(env or {})},
        )
        if check and result.returncode != 0:
            raise EngineError(
                f"git {' '.join(args)} failed in {self.path}:\n"
                + result.stderr.decode(errors="replace").strip()
            )
        return result.stdout.decode(errors="replace").strip()

    def head(self) -> str:
        return self.git("rev-parse", "--verify", "HEAD^{commit}")

    def current_branch(self) -> str | None:
        name = self.git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return name or None

    def is_dirty(self) -> bool:
        """Tracked changes or untracked, non-ignored files."""
        return bool(self.git("status", "--porcelain", "--untracked-files=normal"))

    def read_blob(self, commit: str, path: str) -> str:
        # Byte-exact, unlike git(): that strips, losing a trailing newline.
        result = subprocess.run(
            ["git", "-C", str(self.path), "cat-file", "blob", f"{commit}:{path}"],
            capture_output=True,
            check=True,
        )
        return result.stdout.decode()

    def ref_exists(self, ref: str) -> bool:
        return bool(self.git("rev-parse", "--verify", "--quiet", ref, check=False))

    def trailer_values(self, key: str, tip: str, since: str | None = None) -> dict[str, str]:
        """Each value of trailer `key` in the history of `tip` (back to `since`,
        excluded), with the newest commit carrying it. Only the trailer block
        counts: a body that merely mentions `key:` does not."""
        span = f"{since}..{tip}" if since else tip
        trailer = f"%(trailers:key={key},valueonly,separator=%x1f)"
        log = self.git("log", f"--grep=^{key}: ", f"--format=%H%x1f{trailer}", span)
        found: dict[str, str] = {}
        for line in filter(None, log.splitlines()):
            commit, *values = line.split("\x1f")
            for value in filter(None, values):
                found.setdefault(value.strip(), commit)
        return found


class Draft:
    """A tree being edited on top of `start`, committed patch by patch."""

    def __init__(self, repo: Repo, start: str) -> None:
        self.repo = repo
        self.tip = start
        self._tmp = tempfile.TemporaryDirectory(prefix="eplb-draft-")
        self._env = {"GIT_INDEX_FILE": str(Path(self._tmp.name) / "index")}
        self.repo.git("read-tree", start, env=self._env)
        self._pending: dict[str, str] = {}

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> Draft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self, path: str) -> bool:
        if path in self._pending:
            return True
        return bool(self.repo.git("ls-files", "--cached", "--", path, env=self._env))

    def read(self, path: str) -> str:
        if path in self._pending:
            return self._pending[path]
        if not self.exists(path):
            raise FileNotFoundError(path)
        return self.repo.read_blob(self.tip, path)

    def write(self, path: str, text: str) -> None:
        if self.exists(path) and self.read(path) == text:
            return
        self._pending[path] = text

    def commit(self, message: str, who: Identity) -> str | None:
        """Commit pending writes; None when they change nothing."""
        for path, text in self._pending.items():
            blob = self.repo.git("hash-object", "-w", "--stdin", stdin=text)
            mode = self._mode(path)
            self.repo.git(
                "update-index",
                "--add",
                "--cacheinfo",
                f"{mode},{blob},{path}",
                env=self._env,
            )
        self._pending.clear()
        tree = self.repo.git("write-tree", env=self._env)
        if tree == self.repo.git("rev-parse", f"{self.tip}^{{tree}}"):
            return None
        self.tip = self.repo.git(
            "commit-tree",
            tree,
            "-p",
            self.tip,
            "-F",
            "-",
            stdin=message,
            env=who.env(),
        )
        return self.tip

    def _mode(self, path: str) -> str:
        staged = self.repo.git("ls-files", "--stage", "--", path, env=self._env)
        return staged.split()[0] if staged else "100644"
