"""Edits that replace or remove: statements, definitions, docstrings,
decorators, parameters, call keywords and arguments. Convergent too."""

from __future__ import annotations

import libcst as cst

from eplb_fork import EngineError
from eplb_fork.codemod.base import AnchorMissing
from eplb_fork.codemod.nodes import (
    _already_there,
    _body_of,
    _calls,
    _code,
    _is_bare_string,
    _named,
    _same,
    _shape,
    _walk,
    parse_statements,
)
from eplb_fork.codemod.pyfile import PythonFile
from eplb_fork.codemod.shapes import Shape, defines, statement


def replace_statement(
    src: PythonFile,
    scope: str,
    *,
    anchor: Shape,
    code: str,
    done: Shape | None = None,
    keep_comments: bool = True,
) -> None:
    """Swap the anchor statement for `code`, keeping the comments and blank
    lines above it (only the blank lines, if the comments describe what is
    replaced). `done` (by default: a statement equal to `code`) recognises
    the result, so a tree that already has it is left alone."""
    if src.has_statement(scope, done or statement(code)):
        return
    block, index, depth = src.locate(scope, anchor)
    body = list(_body_of(block))
    new = parse_statements(code, depth)
    kept_above = [
        line
        for line in body[index].leading_lines  # type: ignore[attr-defined]
        if keep_comments or line.comment is None
    ]
    new[0] = new[0].with_changes(leading_lines=[*kept_above, *new[0].leading_lines])
    body[index : index + 1] = new
    src.set_block(block, body)


def replace_decorator(src: PythonFile, function: str, *, old: str, new: str) -> None:
    """Swap `function`'s decorator `@old` for `@new` (a function already
    decorated with `@new` is left alone)."""
    node = src.find(function)
    decorators = list(node.decorators)  # type: ignore[attr-defined]
    shapes = [_shape(_code(d.decorator)) for d in decorators]
    if _shape(new) in shapes:
        return
    if _shape(old) not in shapes:
        raise AnchorMissing(f"{function} decorator `@{old}`", src.path)
    at = shapes.index(_shape(old))
    decorators[at] = decorators[at].with_changes(decorator=cst.parse_expression(new))
    src.replace(node, node.with_changes(decorators=decorators))


def replace_definition(src: PythonFile, scope: str, *, code: str) -> None:
    """Swap the def or class in `scope` named like the one in `code` for it,
    keeping the blank lines and comments above the old one (once)."""
    new = parse_statements(code, src.body(scope)[2])
    name = _named(new[0])
    if name is None:
        raise EngineError(f"no def or class to replace {scope or src.path} with")
    block, index, _ = src.locate(scope, defines(name))
    body = list(_body_of(block))
    if _already_there(body, index, new):
        return
    new[0] = new[0].with_changes(leading_lines=[*body[index].leading_lines, *new[0].leading_lines])
    body[index : index + 1] = new
    src.set_block(block, body)


def replace_docstring(src: PythonFile, scope: str, *, code: str) -> None:
    """Give `scope` the docstring `code` (as a holder's body gives it),
    indented for its place; one it already has is left alone."""
    block, body, depth = src.body(scope)
    new = parse_statements(code, depth)[0]
    if body and _is_bare_string(body[0]):
        if _same(body[0], _code(new)):
            return
        body[0] = new.with_changes(leading_lines=body[0].leading_lines)  # type: ignore[attr-defined]
    else:
        body.insert(0, new)
    src.set_block(block, body)


def remove_statement(src: PythonFile, scope: str, *, anchor: Shape) -> None:
    """Drop the anchor statement with the comments and blank lines above it
    (what they describe goes with it); one already gone is left alone."""
    if not src.has_statement(scope, anchor):
        return
    block, index, _ = src.locate(scope, anchor)
    body = list(_body_of(block))
    del body[index]
    src.set_block(block, body)


def remove_element(src: PythonFile, scope: str, *, anchor: Shape, element: str) -> None:
    """The tuple or list the anchor statement assigns loses `element` (once)."""
    block, index, _ = src.locate(scope, anchor)
    value = _body_of(block)[index].body[0].value  # type: ignore[attr-defined]
    if not isinstance(value, (cst.Tuple, cst.List)):
        raise AnchorMissing(f"{scope} {anchor.describe} as a tuple or list", src.path)
    elements = list(value.elements)
    shapes = [_shape(_code(e).rstrip(", \n")) for e in elements]
    if _shape(element) not in shapes:
        return
    at = shapes.index(_shape(element))
    if at == len(elements) - 1 and at > 0:
        # The new last element ends the tuple as the removed one did.
        elements[at - 1] = elements[at - 1].with_changes(comma=elements[at].comma)
    del elements[at]
    src.replace(value, value.with_changes(elements=elements))


def remove_parameter(src: PythonFile, function: str, *, name: str) -> None:
    """`function` loses its parameter `name` (once)."""
    node = src.find(function)
    params = list(node.params.params)  # type: ignore[attr-defined]
    names = [p.name.value for p in params]
    if name not in names:
        return
    at = names.index(name)
    if at == len(params) - 1 and at > 0:
        params[at - 1] = params[at - 1].with_changes(comma=params[at].comma)
    del params[at]
    new_params = node.params.with_changes(params=params)  # type: ignore[attr-defined]
    src.replace(node, node.with_changes(params=new_params))


def set_call_keyword(src: PythonFile, scope: str, *, callee: str, keyword: str, value: str) -> None:
    """Every call to `callee` inside `scope` that passes `keyword` passes
    `value` for it instead."""
    owner = src.find(scope)
    calls = [
        node
        for node in _walk(owner)
        if isinstance(node, cst.Call)
        and _calls(node, callee)
        and any(a.keyword is not None and a.keyword.value == keyword for a in node.args)
    ]
    if not calls:
        raise AnchorMissing(f"{scope} call to `{callee}({keyword}=...)`", src.path)
    new_value = cst.parse_expression(value)
    for call in calls:
        args = [
            a.with_changes(value=new_value)
            if a.keyword is not None and a.keyword.value == keyword
            else a
            for a in call.args
        ]
        src.replace(call, call.with_changes(args=args))


def replace_argument(src: PythonFile, scope: str, *, callee: str, old: str, new: str) -> None:
    """Every call to `callee` inside `scope` passes `new` where it passed the
    positional or keyword argument `old` (compared as code, layout aside);
    calls already passing `new` are left alone."""
    owner = src.find(scope)
    calls = [node for node in _walk(owner) if isinstance(node, cst.Call) and _calls(node, callee)]
    passed = [[_shape(_code(a.value)) for a in call.args] for call in calls]
    if not any(_shape(old) in args or _shape(new) in args for args in passed):
        raise AnchorMissing(f"{scope} call to `{callee}(...)` passing `{old}`", src.path)
    new_value = cst.parse_expression(new)
    for call, args in zip(calls, passed, strict=True):
        if _shape(old) not in args:
            continue
        edited = [
            a.with_changes(value=new_value) if shape == _shape(old) else a
            for a, shape in zip(call.args, args, strict=True)
        ]
        src.replace(call, call.with_changes(args=edited))
