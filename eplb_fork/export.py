"""The series for review: `git format-patch` files after a cover letter.

The cover letter's prose lives in the line's cover-letter.md: its first line is
the subject, the rest is the body, in which the line `PATCH_LIST` stands for
the patches, one entry each with its origin and upstream status, generated
from the series' metadata.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from eplb_fork import EngineError
from eplb_fork.base import Release
from eplb_fork.baserepo import base_tag
from eplb_fork.gittree import Identity, Repo
from eplb_fork.series import BACKPORT_DIR, Patch, origin_text, patch_commits, upstream_text

COVER_SOURCE = BACKPORT_DIR / "cover-letter.md"
COVER_LETTER = "0000-cover-letter.patch"
PATCH_LIST = "<!-- the patches, generated from the line's series file -->"
# What `git format-patch --cover-letter` leaves for the author to fill in.
SUBJECT_HERE, BLURB_HERE = "*** SUBJECT HERE ***", "*** BLURB HERE ***"


def export_patches(
    repo: Repo,
    release: Release,
    out: Path,
    patches: list[Patch],
    author: Identity,
    cover: Path = COVER_SOURCE,
) -> list[Path]:
    """The commits on the base as numbered patches in `out`, after the cover
    letter naming those of `patches` they hold."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    since = base_tag(release)
    # Signed and dated as the last commit, so exporting again gives the same file.
    who = Identity(author.name, author.email, repo.git("log", "-1", "--format=%cI", "HEAD"))
    repo.git(
        "format-patch",
        "--quiet",
        "--zero-commit",
        "--no-signature",
        "--cover-letter",
        "--output-directory",
        str(out.resolve()),
        f"{since}..HEAD",
        env=who.env(),
    )
    letter = out / COVER_LETTER
    if letter.exists():
        held = patch_commits(repo, "HEAD", since)
        exported = [patch for patch in patches if patch.name in held]
        letter.write_text(cover_letter(letter.read_text(), cover.read_text(), exported))
    return sorted(out.glob("*.patch"))


def cover_letter(template: str, source: str, patches: list[Patch]) -> str:
    """git's cover-letter `template` filled in from the prose `source`."""
    subject, _, body = source.partition("\n")
    if PATCH_LIST not in body:
        raise EngineError(f"{COVER_SOURCE.name} lacks the line {PATCH_LIST}")
    if SUBJECT_HERE not in template or BLURB_HERE not in template:
        raise EngineError("git format-patch --cover-letter left no subject and blurb to fill")
    listing = "\n".join(patch_entry(number, patch) for number, patch in enumerate(patches, 1))
    blurb = body.strip("\n").replace(PATCH_LIST, listing)
    return template.replace(SUBJECT_HERE, subject.strip()).replace(BLURB_HERE, blurb)


def patch_entry(number: int, patch: Patch) -> str:
    return (
        f"{number:2}. {patch.subject}\n    {origin_text(patch)}; upstream: {upstream_text(patch)}"
    )
