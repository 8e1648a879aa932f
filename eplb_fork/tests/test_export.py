"""The review export: numbered patches after a cover letter from the series."""

from __future__ import annotations

import re

from eplb_fork.apply import apply_series
from eplb_fork.base import Release
from eplb_fork.export import COVER_LETTER, COVER_SOURCE, PATCH_LIST, cover_letter, export_patches
from eplb_fork.gittree import Repo
from eplb_fork.series import load_series
from eplb_fork.tests.synthetic import AUTHOR, CONFIG, SERIES, make_repo

RELEASE = Release("9.9.9", "vllm-9.9.9.tar.gz", "0" * 64, "vllm.whl", "0" * 64, "2026-01-01")
SOURCE = f"[EPLB] A test series\n\nWhat it does.\n\n{PATCH_LIST}\n\nHow it was tested.\n"


def exported_fork(tmp_path):
    repo = make_repo(tmp_path / "fork", {"config.py": CONFIG})
    repo.git("tag", "base/v9.9.9")
    apply_series(repo, SERIES, AUTHOR)
    cover = tmp_path / "cover-letter.md"
    cover.write_text(SOURCE)
    return repo, cover


def test_cover_letter_names_n_and_lists_every_patch_in_order(tmp_path):
    repo, cover = exported_fork(tmp_path)
    out = tmp_path / "patches"
    files = export_patches(repo, RELEASE, out, SERIES, AUTHOR, cover)
    assert [f.name for f in files] == [
        COVER_LETTER,
        "0001-EPLB-bring.patch",
        "0002-EPLB-raise.patch",
        "0003-EPLB-bound.patch",
    ]
    letter = (out / COVER_LETTER).read_text()
    assert "Subject: [PATCH 0/3] [EPLB] A test series\n" in letter
    assert "***" not in letter
    entries = re.findall(r"^ *(\d+)\. (.*)\n +(.*)$", letter, re.MULTILINE)
    assert entries == [
        (str(n), patch.subject, "ours; upstream: not yet") for n, patch in enumerate(SERIES, 1)
    ]
    assert letter.index("What it does.") < letter.index(" 1. ") < letter.index("How it was")


def test_export_is_reproducible_and_git_am_takes_the_numbered_patches(tmp_path):
    repo, cover = exported_fork(tmp_path)
    first = export_patches(repo, RELEASE, tmp_path / "a", SERIES, AUTHOR, cover)
    second = export_patches(repo, RELEASE, tmp_path / "b", SERIES, AUTHOR, cover)
    assert [f.read_bytes() for f in first] == [f.read_bytes() for f in second]
    clone = tmp_path / "am"
    repo.git("clone", "--quiet", "--branch", "base/v9.9.9", str(repo.path), str(clone))
    am = Repo(clone)
    am.git("am", "--quiet", *map(str, first[1:]), env=AUTHOR.env())
    assert am.git("rev-parse", "HEAD^{tree}") == repo.git("rev-parse", "HEAD^{tree}")


def test_the_series_cover_letter_lists_the_whole_series():
    patches = load_series()
    template = "Subject: [PATCH 00/NN] *** SUBJECT HERE ***\n\n*** BLURB HERE ***\n"
    letter = cover_letter(template, COVER_SOURCE.read_text(), patches)
    assert letter.startswith("Subject: [PATCH 00/NN] [EPLB] ")
    listed = re.findall(r"^ *(\d+)\. (.*)$", letter, re.MULTILINE)
    assert listed == [(str(n), patch.subject) for n, patch in enumerate(patches, 1)]
