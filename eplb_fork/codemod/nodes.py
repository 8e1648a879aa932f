"""libcst node helpers the shapes and edits share: code and shape of a node,
bodies, members and blocks of a scope, statements parsed at a depth."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Sequence

import libcst as cst


def _shape(code: str) -> str:
    return ast.dump(ast.parse(textwrap.dedent(code)))


_EMPTY = cst.Module(body=[])


def _code(node: cst.CSTNode) -> str:
    return textwrap.dedent(_EMPTY.code_for_node(node))


def _same(node: cst.CSTNode, code: str) -> bool:
    try:
        return _shape(_code(node)) == _shape(code)
    except SyntaxError:
        return False


def _body_of(node: cst.CSTNode) -> Sequence[cst.CSTNode]:
    if isinstance(node, cst.Module):
        return node.body
    body = node.body  # type: ignore[attr-defined]
    return body.body if isinstance(body, cst.IndentedBlock) else body


def _is_bare_string(node: cst.CSTNode) -> bool:
    """A statement that is only a string literal: a field's docstring."""
    return (
        isinstance(node, cst.SimpleStatementLine)
        and len(node.body) == 1
        and isinstance(node.body[0], cst.Expr)
        and isinstance(node.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _named(node: cst.CSTNode) -> str | None:
    if isinstance(node, (cst.ClassDef, cst.FunctionDef)):
        return node.name.value
    if isinstance(node, cst.SimpleStatementLine) and len(node.body) == 1:
        inner = node.body[0]
        if isinstance(inner, cst.AnnAssign) and isinstance(inner.target, cst.Name):
            return inner.target.value
    return None


_COMPOUND = (cst.If, cst.With, cst.For, cst.While, cst.Try)


INDENT = "    "


def _blocks(node: cst.CSTNode, depth: int) -> Iterator[tuple[cst.CSTNode, int]]:
    """`node` and the blocks nested in its compound statements, each with the
    indentation depth of its body."""
    yield node, depth
    for child in _body_of(node):
        if not isinstance(child, _COMPOUND):
            continue
        branch: cst.CSTNode | None = child
        while branch is not None:
            yield from _blocks(branch, depth + 1)
            orelse = getattr(branch, "orelse", None)
            branch = orelse if isinstance(orelse, (cst.If, cst.Else)) else None


def _members(node: cst.CSTNode, depth: int) -> Iterator[tuple[cst.CSTNode, int]]:
    """Direct members with their depth, looking through module-level `if`
    blocks so that a definition guarded by a platform check is found by name."""
    for child in _body_of(node):
        yield child, depth
        if isinstance(node, cst.Module) and isinstance(child, cst.If):
            for branch in (child, child.orelse):
                if isinstance(branch, (cst.If, cst.Else)):
                    for member in _body_of(branch):
                        yield member, depth + 1


def parse_statements(code: str, depth: int = 0) -> list[cst.BaseStatement]:
    """Statements of `code` ready to sit in a block at `depth`.

    The code is parsed already indented to that depth, so multi-line strings
    (docstrings) carry the right indentation. The first newline after the
    opening quotes is dropped; a further leading blank line is kept as one.
    """
    code = textwrap.dedent(code)
    if code.startswith("\n"):
        code = code[1:]
    nesting = "".join(f"{INDENT * level}if _:\n" for level in range(depth))
    indented = textwrap.indent(code, INDENT * depth, predicate=str.strip)
    module = cst.parse_module(nesting + indented)
    if depth == 0:
        statements = list(module.body)
        # Leading comments and blank lines of a module are its header.
        if statements and module.header:
            first = statements[0]
            statements[0] = first.with_changes(leading_lines=[*module.header, *first.leading_lines])
        return statements
    node: cst.CSTNode = module.body[0]
    for _ in range(depth - 1):
        node = _body_of(node)[0]
    return list(_body_of(node))  # type: ignore[arg-type]


def _keyword(name: str, value: cst.BaseExpression) -> cst.Arg:
    """`name=value`, spaced as black and ruff write keyword arguments."""
    no_space = cst.SimpleWhitespace("")
    return cst.Arg(keyword=cst.Name(name), value=value, equal=cst.AssignEqual(no_space, no_space))


def _already_there(body: Sequence[cst.CSTNode], at: int, new: list[cst.CSTNode]) -> bool:
    window = body[at : at + len(new)]
    return (
        at >= 0
        and len(window) == len(new)
        and all(_same(old, _code(node)) for old, node in zip(window, new, strict=False))
    )


def _calls(call: cst.Call, callee: str) -> bool:
    """`callee` names the function; `kernel[...]` matches a launch with any grid."""
    func = call.func
    if callee.endswith("[...]"):
        if not isinstance(func, cst.Subscript):
            return False
        func, callee = func.value, callee.removesuffix("[...]")
    # A callee spread over lines (a call's result, a parenthesized chain)
    # may not parse on its own: it is not the one named.
    return _same(func, callee)


def _defined_name(node: cst.CSTNode) -> str | None:
    """The name a definition, a field or a plain `NAME = value` binds."""
    if isinstance(node, cst.SimpleStatementLine) and len(node.body) == 1:
        inner = node.body[0]
        if isinstance(inner, cst.Assign) and len(inner.targets) == 1:
            target = inner.targets[0].target
            return target.value if isinstance(target, cst.Name) else None
    return _named(node)


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _ellipsis(node: cst.CSTNode) -> bool:
    return (
        isinstance(node, cst.SimpleStatementLine)
        and isinstance(node.body[0], cst.Expr)
        and isinstance(node.body[0].value, cst.Ellipsis)
    )


def _is_import(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.SimpleStatementLine) and isinstance(
        node.body[0], (cst.Import, cst.ImportFrom)
    )


def _comments(node: cst.CSTNode) -> list[cst.EmptyLine]:
    """A node's leading comment lines, without the blank lines before them."""
    lines = list(node.leading_lines)  # type: ignore[attr-defined]
    while lines and lines[0].comment is None:
        lines.pop(0)
    return lines
