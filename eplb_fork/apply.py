"""Applying the series to a git tree, all or nothing."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from eplb_fork import EngineError
from eplb_fork.base import Release, extract_sdist
from eplb_fork.codemod import AnchorMissing, Conflict
from eplb_fork.gittree import Draft, Identity, Repo
from eplb_fork.series import Patch


@dataclass(frozen=True)
class Outcome:
    patch: Patch
    commit: str | None  # None: the tree already had this change
    upstream_in: str | None = None  # the base release already ships it

    @property
    def status(self) -> str:
        if self.upstream_in:
            return f"upstream in v{self.upstream_in}"
        return "applied" if self.commit else "already applied"


def already_upstream(patch: Patch, base_version: str | None) -> bool:
    """The patch's change shipped in a release at or before the base's."""
    released = patch.upstream_version
    return bool(base_version and released and Version(base_version) >= Version(released))


def tree_version(repo: Repo) -> str | None:
    """The vLLM release a checkout is at: an sdist's PKG-INFO, else its
    nearest release tag; None when neither says."""
    pkg_info = repo.path / "PKG-INFO"
    if pkg_info.exists():
        for line in pkg_info.read_text().splitlines():
            if line.startswith("Version: "):
                return line.removeprefix("Version: ").split("+")[0]
    tag = repo.git("describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", check=False)
    return tag.removeprefix("v") or None


def apply_series(
    repo: Repo,
    patches: list[Patch],
    author: Identity,
    *,
    branch: str | None = None,
    base_version: str | None = None,
    say=print,
) -> list[Outcome]:
    """Commit each patch on top of HEAD. With `branch`, the commits go on a new
    branch (checked out at the end); without, the current branch moves.

    Patches the base release already ships upstream (by their
    Applied-Upstream metadata) are reported and skipped, never applied twice.
    Nothing moves until every patch has been applied: a failure leaves HEAD,
    branches, index and worktree as they were, and reports each patch's state.
    """
    if not (repo.path / ".git").exists():
        raise EngineError(f"{repo.path} is not a git checkout")
    if repo.is_dirty():
        raise EngineError(f"{repo.path} has uncommitted changes; commit or stash them first")
    if branch and repo.ref_exists(f"refs/heads/{branch}"):
        raise EngineError(f"branch {branch} already exists in {repo.path}")
    start = repo.head()
    outcomes = []
    with Draft(repo, start) as draft:
        for number, patch in enumerate(patches, 1):
            if already_upstream(patch, base_version):
                outcome = Outcome(patch, None, upstream_in=patch.upstream_version)
            else:
                try:
                    patch.apply(draft)
                except (AnchorMissing, Conflict) as error:
                    report = "".join(f"\n  {o.status:<24} {o.patch.name}" for o in outcomes)
                    raise EngineError(
                        f"patch {number}/{len(patches)} {patch.name}: {error}\n"
                        f"nothing was changed: {repo.path} is still at {start[:12]}"
                        + (f"\nbefore it:{report}" if report else "")
                    ) from error
                commit = draft.commit(patch.message(author), patch.identity(author))
                outcome = Outcome(patch, commit)
            outcomes.append(outcome)
            short = outcome.commit[:12] if outcome.commit else "-" * 12
            say(f"  {short} {outcome.status:<24} {patch.subject}")
        tip = draft.tip
    if tip != start:
        if branch:
            repo.git("branch", branch, tip)
            repo.git("checkout", "--quiet", branch)
        else:
            # Compare-and-swap on the ref, then bring the (clean) worktree along.
            repo.git("update-ref", "-m", "eplb-fork: apply series", "HEAD", tip, start)
            repo.git("reset", "--quiet", "--hard", tip)
    elif branch:
        repo.git("checkout", "--quiet", "-b", branch)
    return outcomes


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
        "commit", "--quiet", "--no-verify", "-m",
        f"Import vLLM v{release.version} from its PyPI sdist\n\n"
        f"{release.sdist} sha256:{release.sdist_sha256}\n",
        env=who.env(),
    )  # fmt: skip
    repo.git("tag", base_tag(release))
    return repo


def base_is_current(fork: Path, release: Release) -> bool:
    repo = Repo(fork)
    return (fork / ".git").exists() and repo.ref_exists(f"refs/tags/{base_tag(release)}")


def export_patches(repo: Repo, release: Release, out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    repo.git(
        "format-patch", "--quiet", "--zero-commit", "--no-signature", "--output-directory",
        str(out.resolve()), f"{base_tag(release)}..HEAD",
    )  # fmt: skip
    return sorted(out.glob("*.patch"))
