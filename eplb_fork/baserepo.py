"""The fork's starting point: the pristine base sdist as one tagged commit."""

from __future__ import annotations

import shutil
from pathlib import Path

from eplb_fork import EngineError
from eplb_fork.base import Release, extract_sdist
from eplb_fork.gittree import Identity, Repo


def base_tag(release: Release) -> str:
    return f"base/v{release.version}"


def init_base_repo(fork: Path, release: Release, sdist: Path, author: Identity) -> Repo:
    """A git repo holding the pristine sdist as one commit, tagged base/vX."""
    if fork.exists():
        shutil.rmtree(fork)
    fork.parent.mkdir(parents=True, exist_ok=True)
    print(f"unpack {sdist.name} -> {fork}")
    extract_sdist(sdist, fork)
    repo = Repo(fork)
    repo.git("init", "--quiet", "--initial-branch=main")
    repo.git("config", "user.name", author.name)
    repo.git("config", "user.email", author.email)
    # The sdist's own .gitignore decides what is source; build outputs the
    # install adds later stay ignored, so the fork reads as clean afterwards.
    repo.git("add", "--all")
    who = Identity("vLLM base import", author.email, release.released)
    repo.git(
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        f"Import vLLM v{release.version} from its PyPI sdist\n\n"
        f"{release.sdist} sha256:{release.sdist_sha256}\n",
        env=who.env(),
    )
    repo.git("tag", base_tag(release))
    return repo


def base_is_current(fork: Path, release: Release) -> bool:
    repo = Repo(fork)
    return (fork / ".git").exists() and repo.ref_exists(f"refs/tags/{base_tag(release)}")


def fresh_base(fork: Path, release: Release, sdist: Path, author: Identity) -> Repo:
    """`fork` on branch main at the base commit: an existing fork of this base
    is reset (its installed build outputs stay), anything else is unpacked anew."""
    if not base_is_current(fork, release):
        return init_base_repo(fork, release, sdist, author)
    repo = Repo(fork)
    if repo.is_dirty():
        raise EngineError(f"{fork} has local changes; move them away or delete {fork}")
    print(f"{fork}: reset to {base_tag(release)}")
    repo.git("checkout", "--quiet", "-B", "main", base_tag(release))
    return repo
