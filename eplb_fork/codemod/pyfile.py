"""A Python file of the tree, its scopes ("" the module, "Cls",
"Cls.method", "function") and what it defines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import libcst as cst

from eplb_fork.codemod.base import AnchorMissing, Tree
from eplb_fork.codemod.nodes import _blocks, _body_of, _members, _named
from eplb_fork.codemod.shapes import Shape


class PythonFile:
    """One Python file of the tree, parsed once and edited by name."""

    def __init__(self, tree: Tree, path: str) -> None:
        if not tree.exists(path):
            raise AnchorMissing(path, "the tree")
        self.tree = tree
        self.path = path
        self.module = cst.parse_module(tree.read(path))

    def find(self, scope: str) -> cst.CSTNode:
        return self._find(scope)[0]

    def definitions(self, scope: str) -> list[cst.CSTNode]:
        """Every definition `scope` names: a top-level name may be defined in
        each branch of a module-level `if` (one per platform)."""
        first = self.find(scope)
        if "." in scope.strip("."):
            return [first]
        return [m for m, _ in _members(self.module, 0) if _named(m) == scope]

    def _find(self, scope: str) -> tuple[cst.CSTNode, int]:
        """The node named by `scope` and the depth of its body."""
        node: cst.CSTNode = self.module
        body_depth = 0
        walked: list[str] = []
        for part in filter(None, scope.split(".")):
            walked.append(part)
            found = [(m, d) for m, d in _members(node, body_depth) if _named(m) == part]
            if not found:
                raise AnchorMissing(".".join(walked), self.path)
            node, depth = found[0]
            body_depth = depth + 1
        return node, body_depth

    def locate(self, scope: str, shape: Shape) -> tuple[cst.CSTNode, int, int]:
        """The block holding the first statement of `shape` in `scope` (its own
        body first, then blocks nested in if/with/for/while/try, but never
        inside another def or class), the statement's index there, and the
        block's depth."""
        for block, depth in _blocks(*self._find(scope)):
            for index, member in enumerate(_body_of(block)):
                if shape.matches(member):
                    return block, index, depth
        where = f"{scope} " if scope else ""
        raise AnchorMissing(f"{where}{shape.describe}", self.path)

    def body(self, scope: str) -> tuple[cst.CSTNode, list[cst.CSTNode], int]:
        node, depth = self._find(scope)
        return node, list(_body_of(node)), depth

    def defines(self, scope: str) -> bool:
        """Whether `scope` names something in this file (a release may lack it)."""
        try:
            self._find(scope)
        except AnchorMissing:
            return False
        return True

    def has_statement(self, scope: str, shape: Shape) -> bool:
        try:
            self.locate(scope, shape)
        except AnchorMissing:
            return False
        return True

    def replace(self, old: cst.CSTNode, new: cst.CSTNode | cst.RemovalSentinel) -> None:
        self.module = self.module.deep_replace(old, new)  # type: ignore[assignment]

    def set_block(self, owner: cst.CSTNode, body: Sequence[cst.CSTNode]) -> None:
        if isinstance(owner, cst.Module):
            self.module = owner.with_changes(body=list(body))
        else:
            new_block = owner.body.with_changes(body=list(body))  # type: ignore[attr-defined]
            self.replace(owner, owner.with_changes(body=new_block))

    def save(self) -> None:
        self.tree.write(self.path, self.module.code)


@contextmanager
def python_file(tree: Tree, path: str) -> Iterator[PythonFile]:
    """Edit a file; written back only if the block finishes without error."""
    source = PythonFile(tree, path)
    yield source
    source.save()
