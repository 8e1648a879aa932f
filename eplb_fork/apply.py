"""Applying the series to a git tree, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

from eplb_fork import EngineError
from eplb_fork.codemod import AnchorMissing, Conflict
from eplb_fork.gittree import Draft, Identity, Repo
from eplb_fork.series import Patch, patch_commits


@dataclass(frozen=True)
class Outcome:
    patch: Patch
    commit: str | None  # None: the tree already had this change
    upstream_in: str | None = None  # the base release already ships it
    held_in: str | None = None  # our commit of it the tree already holds

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


def _fixed(patch, patches, outcomes, held) -> tuple[str, str] | None:
    """The commit and subject of the patch `patch` fixes, from this run or
    the tree's history; None where it has none (or it is upstream's)."""
    if not patch.fixes:
        return None
    subjects = {p.name: p.subject for p in patches}
    made = {o.patch.name: o.commit or o.held_in for o in outcomes}
    commit = made.get(patch.fixes) or held.get(patch.fixes)
    return (commit, subjects[patch.fixes]) if commit else None


def apply_series(
    repo: Repo,
    patches: list[Patch],
    author: Identity,
    *,
    branch: str | None = None,
    base_version: str | None = None,
    since: str | None = None,
    say=print,
) -> list[Outcome]:
    """Commit each patch on top of HEAD. With `branch`, the commits go on a new
    branch (checked out at the end); without, the current branch moves.

    Patches the base release already ships upstream (by their
    Applied-Upstream metadata) are reported and skipped, never applied twice;
    so are patches whose commit (by its patch trailer) HEAD's history holds
    after `since` (the base, when known), however the commits on top of it
    changed their code since. A patch that fixes an earlier one (FIXES)
    names that one's commit in a kernel-style `Fixes:` trailer.
    Nothing moves until every patch has been applied: a failure leaves HEAD,
    branches, index and worktree as they were, and reports each patch's state.
    """
    if not (repo.path / ".git").exists():
        raise EngineError(f"{repo.path} is not a git checkout")
    if repo.is_dirty():
        raise EngineError(f"{repo.path} has uncommitted changes; commit or stash them first")
    if branch and repo.ref_exists(f"refs/heads/{branch}"):
        raise EngineError(f"branch {branch} already exists in {repo.path}")
    names = [patch.name for patch in patches]
    for patch in patches:
        if patch.fixes and patch.fixes not in names[: names.index(patch.name)]:
            raise EngineError(
                f"{patch.name} fixes {patch.fixes}, which is not an earlier patch of its line"
            )
    start = repo.head()
    held = patch_commits(repo, start, since)
    outcomes = []
    with Draft(repo, start) as draft:
        for number, patch in enumerate(patches, 1):
            if already_upstream(patch, base_version):
                outcome = Outcome(patch, None, upstream_in=patch.upstream_version)
            elif patch.name in held:
                outcome = Outcome(patch, None, held_in=held[patch.name])
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
                message = patch.message(author, _fixed(patch, patches, outcomes, held))
                commit = draft.commit(message, patch.identity(author))
                outcome = Outcome(patch, commit)
            outcomes.append(outcome)
            short = (outcome.commit or outcome.held_in or "-" * 12)[:12]
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
