"""An in-memory tree for the edit vocabulary's tests: the files a
`python_file` edits, without a checkout."""

from __future__ import annotations

import textwrap

from eplb_fork.codemod import python_file


class MemoryTree:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = {k: textwrap.dedent(v) for k, v in files.items()}

    def exists(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> str:
        return self.files[path]

    def write(self, path: str, text: str) -> None:
        self.files[path] = text


def edited(source: str, edit) -> str:
    tree = MemoryTree({"m.py": source})
    with python_file(tree, "m.py") as src:
        edit(src)
    return tree.files["m.py"]


def locate_in_step(source: str, shape):
    tree = MemoryTree({"m.py": source})
    with python_file(tree, "m.py") as src:
        return src.locate("step", shape)
