"""Loading the series: `series/series` lists patch modules in order (as quilt's
series file does); each module carries its own metadata and an `apply(tree)`.
"""

from __future__ import annotations

import importlib.util
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from eplb_fork import REPO_ROOT, EngineError
from eplb_fork.gittree import Identity

SERIES_DIR = REPO_ROOT / "series"
UPSTREAM_PR = "https://github.com/vllm-project/vllm/pull/{}"


@dataclass(frozen=True)
class Patch:
    name: str
    subject: str
    body: str
    origin: str  # DEP-3: "backport, <url>" for upstream work, "vendor" for ours
    applied_upstream: str | None  # DEP-3: the release and change that has it
    date: str
    apply: Callable[[object], None]

    def message(self, author: Identity) -> str:
        paragraphs = textwrap.dedent(self.body).strip().split("\n\n")
        wrapped = "\n\n".join(_wrap_paragraph(p) for p in paragraphs)
        trailers = [f"Origin: {self.origin}"]
        if self.applied_upstream:
            trailers.append(f"Applied-Upstream: {self.applied_upstream}")
        else:
            trailers.append("Forwarded: not-yet")
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


REQUIRED = ("SUBJECT", "BODY", "ORIGIN", "DATE", "apply")


def load_patch(path: Path) -> Patch:
    module = _load_module(path)
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise EngineError(f"series/{path.name} lacks {', '.join(missing)}")
    return Patch(
        name=path.stem,
        subject=module.SUBJECT,
        body=module.BODY,
        origin=module.ORIGIN,
        applied_upstream=getattr(module, "APPLIED_UPSTREAM", None),
        date=module.DATE,
        apply=module.apply,
    )


def series_author(series_dir: Path = SERIES_DIR) -> Identity:
    module = _load_module(series_dir / "__init__.py")
    return Identity(module.AUTHOR_NAME, module.AUTHOR_EMAIL, "")


def load_series(series_dir: Path = SERIES_DIR) -> list[Patch]:
    index = series_dir / "series"
    names = [line.split("#", 1)[0].strip() for line in index.read_text().splitlines()]
    patches = []
    for name in filter(None, names):
        path = series_dir / f"{name}.py"
        if not path.exists():
            raise EngineError(f"series/series lists {name}, but series/{name}.py is missing")
        patches.append(load_patch(path))
    return patches
