"""Whole files and fragments that live in this repo (a line's fragments/)."""

from __future__ import annotations

import textwrap

import libcst as cst

from eplb_fork import REPO_ROOT, EngineError
from eplb_fork.codemod.base import Conflict, Tree
from eplb_fork.codemod.nodes import (
    _EMPTY,
    _body_of,
    _comments,
    _defined_name,
    _is_bare_string,
    _is_import,
)


def bring_file(tree: Tree, path: str) -> None:
    """Copy our file at `path` into the fork at the same path. An existing file
    with other contents is never overwritten."""
    ours = (REPO_ROOT / path).read_text()
    if tree.exists(path):
        if tree.read(path) == ours:
            return
        raise Conflict(f"{path} already exists in the tree with other contents; not overwriting")
    tree.write(path, ours)


class Fragments:
    """A patch's new code, kept in a real module under a line's `fragments/`
    so that it is linted and read as code rather than as strings.

    The module holds three kinds of thing, each found by name:
    - definitions that land as they are (`definition`, or `code` for all of
      them): functions, classes, constants;
    - members for an existing class (`members`): the body of a class named
      like the target, fields with their docstrings and methods;
    - statements for an existing body (`body`): the body of a holder function
      named for what the statements do, its parameters the names they use.
    Where the code goes is the patch's to say, by its verb and anchor: a
    holder is named for what its statements do, and its docstring (or a
    class's), if any, says why; it is not carried into the fork. Imports
    are the target file's business.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.module = cst.parse_module((REPO_ROOT / path).read_text())

    def _node(self, name: str) -> cst.CSTNode:
        node: cst.CSTNode = self.module
        for part in name.split("."):
            found = [m for m in _body_of(node) if _defined_name(m) == part]
            if not found:
                raise EngineError(f"{self.path} has no `{name}`")
            node = found[0]
        return node

    def definition(self, name: str) -> str:
        """A top-level def, class or constant with its comments and decorators."""
        node = self._node(name)
        return _EMPTY.code_for_node(node.with_changes(leading_lines=_comments(node)))

    def members(self, name: str) -> str:
        """The body of class `name`, less its docstring."""
        return self._statements(self._node(name))

    def body(self, name: str) -> str:
        """The statements of holder function `name`, less its docstring and a
        final `return`: a holder returns the names its statements leave to the
        code after them, so that they are not unused locals."""
        holder = self._node(name)
        statements = list(_body_of(holder))
        last = statements[-1] if statements else None
        if isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[0], cst.Return):
            holder = holder.with_changes(body=holder.body.with_changes(body=statements[:-1]))  # type: ignore[attr-defined]
        return self._statements(holder)

    def code(self) -> str:
        """Everything but the module docstring and imports."""
        kept = [
            node for node in self.module.body if not (_is_import(node) or _is_bare_string(node))
        ]
        return self.module.with_changes(body=kept, header=[]).code

    def _statements(self, owner: cst.CSTNode) -> str:
        body = list(_body_of(owner))
        if body and _is_bare_string(body[0]):
            body = body[1:]
        if body:
            body[0] = body[0].with_changes(leading_lines=_comments(body[0]))
        # Rendered as the owner's block, then dedented: the lines of a
        # multi-line string (a docstring) keep their place relative to the
        # code, as parse_statements expects (for a top-level owner).
        block = owner.body.with_changes(body=body, header=cst.TrailingWhitespace())  # type: ignore[attr-defined]
        return textwrap.dedent(_EMPTY.code_for_node(block)).removeprefix("\n")
