"""Statement shapes: what an anchor looks like, matched by meaning (AST),
not by text."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import libcst as cst

from eplb_fork.codemod.nodes import _blocks, _body_of, _calls, _code, _is_bare_string, _same, _shape


@dataclass(frozen=True)
class Shape:
    """A statement matcher with a human-readable name for error messages."""

    describe: str
    matches: Callable[[cst.CSTNode], bool]


def if_block(test: str) -> Shape:
    """`if <test>:` (elif/else parts are part of the statement)."""
    wanted = _shape(test)

    def matches(node: cst.CSTNode) -> bool:
        return isinstance(node, cst.If) and _shape(_code(node.test)) == wanted

    return Shape(f"`if {test}:`", matches)


def defines(name: str) -> Shape:
    """A def or class named `name`."""

    def matches(node: cst.CSTNode) -> bool:
        return isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node.name.value == name

    return Shape(f"definition of `{name}`", matches)


def call_statement(callee: str) -> Shape:
    """An expression statement calling `callee` (any arguments; `kernel[...]`
    is a launch of `kernel` with any grid)."""

    def matches(node: cst.CSTNode) -> bool:
        if not isinstance(node, cst.SimpleStatementLine) or len(node.body) != 1:
            return False
        expr = node.body[0]
        return (
            isinstance(expr, cst.Expr)
            and isinstance(expr.value, cst.Call)
            and _calls(expr.value, callee)
        )

    return Shape(f"call to `{callee}(...)`", matches)


def with_block(callee: str) -> Shape:
    """`with ...:` whose context managers include a call to `callee`."""
    wanted = _shape(callee)

    def matches(node: cst.CSTNode) -> bool:
        return isinstance(node, cst.With) and any(
            isinstance(item.item, cst.Call) and _shape(_code(item.item.func)) == wanted
            for item in node.items
        )

    return Shape(f"`with {callee}(...)`", matches)


def statement(code: str) -> Shape:
    """A statement equal to `code` up to formatting and comments."""
    first_line = textwrap.dedent(code).strip().splitlines()[0]
    return Shape(f"`{first_line}`", lambda node: _same(node, code))


def assigns(name: str) -> Shape:
    """An assignment to `name` (plain, annotated or augmented)."""

    def matches(node: cst.CSTNode) -> bool:
        if not isinstance(node, cst.SimpleStatementLine) or len(node.body) != 1:
            return False
        inner = node.body[0]
        if isinstance(inner, cst.Assign):
            targets = [t.target for t in inner.targets]
        elif isinstance(inner, (cst.AnnAssign, cst.AugAssign)):
            targets = [inner.target]
        else:
            return False
        return any(_code(t) == name for t in targets)

    return Shape(f"assignment to `{name}`", matches)


def assigns_item(container: str) -> Shape:
    """An assignment to an item of `container` (`container[...] = ...`),
    whatever the key: releases name the key differently."""

    def matches(node: cst.CSTNode) -> bool:
        if not isinstance(node, cst.SimpleStatementLine) or len(node.body) != 1:
            return False
        inner = node.body[0]
        return isinstance(inner, cst.Assign) and any(
            isinstance(t.target, cst.Subscript) and _code(t.target.value) == container
            for t in inner.targets
        )

    return Shape(f"assignment to `{container}[...]`", matches)


def if_defining(name: str) -> Shape:
    """An `if` block (a platform guard, say) one of whose branches defines
    `name`, whatever its test: releases guard with other tests."""

    def matches(node: cst.CSTNode) -> bool:
        branch = node
        while isinstance(branch, (cst.If, cst.Else)):
            if any(defines(name).matches(member) for member in _body_of(branch)):
                return True
            branch = getattr(branch, "orelse", None)
        return False

    return Shape(f"`if` block defining `{name}`", matches)


def docstring() -> Shape:
    """A scope's docstring (its first bare string)."""
    return Shape("docstring", _is_bare_string)


def containing(outer: Shape, inner: Shape) -> Shape:
    """A statement of shape `outer` whose blocks (its own, and those nested in
    its if/with/for/while/try) hold a statement of shape `inner`: a block
    recognised by what was put inside it."""

    def matches(node: cst.CSTNode) -> bool:
        return outer.matches(node) and any(
            inner.matches(member) for block, _ in _blocks(node, 0) for member in _body_of(block)
        )

    return Shape(f"{outer.describe} holding {inner.describe}", matches)


def uses(name: str) -> Shape:
    """A simple statement (not a block) that reads or writes `name`, a name or
    an attribute such as `self._maybe_dispatch`."""
    wanted = _shape(name)
    last = name.rsplit(".", 1)[-1]

    def names_it(part: cst.CSTNode) -> bool:
        if isinstance(part, cst.Attribute):
            return part.attr.value == last and _shape(_code(part)) == wanted
        return isinstance(part, cst.Name) and part.value == name

    def parts(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        # `obj.attr` uses `obj`, not a name `attr`; `f(key=v)` uses `v`.
        yield node
        for child in [node.value] if isinstance(node, (cst.Attribute, cst.Arg)) else node.children:
            yield from parts(child)

    def matches(node: cst.CSTNode) -> bool:
        return isinstance(node, cst.SimpleStatementLine) and any(map(names_it, parts(node)))

    return Shape(f"statement using `{name}`", matches)
