"""Seeding a venv with distributions another venv has installed, hard-linked
(`python -m eplb_fork link`): how `make test-wheel`'s fresh venv gets torch's
7 GB CUDA stack without downloading or copying it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from eplb_fork import EngineError


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if len(found) != 1:
        raise EngineError(f"{venv}: expected one lib/python3*/site-packages, found {len(found)}")
    return found[0]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def link_distributions(source: Path, target: Path, roots: list[str]) -> list[str]:
    """Hard-link the distributions `roots` need, as installed in venv
    `source` (the roots and their unconditional requirements, transitively),
    into venv `target`, so that pip there finds them installed. Linked, not
    copied: torch's CUDA stack is 7 GB. Files outside site-packages (console
    scripts, whose shebang names `source`'s python) are left out. Returns
    the names linked."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement

    source_site, target_site = _site_packages(source), _site_packages(target)
    installed = {_normalized(d.metadata["Name"]): d for d in distributions(path=[str(source_site)])}
    wanted: list[str] = []
    pending = [_normalized(root) for root in roots]
    while pending:
        name = pending.pop()
        if name in wanted:
            continue
        if name not in installed:
            raise EngineError(f"{source} has no {name} to link (run 'make fork' first)")
        wanted.append(name)
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(_normalized(requirement.name))
    for name in wanted:
        for file in installed[name].files or []:
            path = Path(os.path.normpath(source_site / file))
            if not path.is_relative_to(source_site) or not path.is_file():
                continue
            link = target_site / path.relative_to(source_site)
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                link.symlink_to(os.readlink(path))
            else:
                os.link(path, link)
    return sorted(wanted)
