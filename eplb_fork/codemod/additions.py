"""Edits that add inside a scope: statements, members, call keywords,
parameters, definitions (imports and field constraints: `imports`). Each
is convergent: on a tree that already has what it adds, it changes
nothing."""

from __future__ import annotations

import libcst as cst

from eplb_fork import EngineError
from eplb_fork.codemod.base import AnchorMissing, Conflict
from eplb_fork.codemod.nodes import (
    _already_there,
    _body_of,
    _calls,
    _code,
    _comments,
    _ellipsis,
    _is_bare_string,
    _keyword,
    _named,
    _same,
    _shape,
    _walk,
    parse_statements,
)
from eplb_fork.codemod.pyfile import PythonFile
from eplb_fork.codemod.shapes import Shape


def _insert(src: PythonFile, scope: str, anchor: Shape, code: str, *, after: bool) -> None:
    block, index, depth = src.locate(scope, anchor)
    new = parse_statements(code, depth)
    body = list(_body_of(block))
    at = index + 1 if after else index
    if _already_there(body, at if after else at - len(new), new):
        return
    body[at:at] = new
    src.set_block(block, body)


def insert_after(src: PythonFile, scope: str, *, anchor: Shape, code: str) -> None:
    """Put `code` right after the anchor statement (once)."""
    _insert(src, scope, anchor, code, after=True)


def insert_before(src: PythonFile, scope: str, *, anchor: Shape, code: str) -> None:
    """Put `code` right before the anchor statement (once)."""
    _insert(src, scope, anchor, code, after=False)


def append_to(src: PythonFile, scope: str, *, code: str) -> None:
    """Put `code` at the end of a function or class body (once)."""
    block, body, depth = src.body(scope)
    new = parse_statements(code, depth)
    if _already_there(body, len(body) - len(new), new):
        return
    src.set_block(block, [*body, *new])


def add_members(src: PythonFile, scope: str, *, code: str, after: str) -> None:
    """Add fields or methods to a class after the member named `after`.
    A member already present with the same definition is skipped; one present
    with a different definition is a conflict."""
    block, body, depth = src.body(scope)
    at = body.index(src.find(f"{scope}.{after}")) + 1
    # The anchor's own docstring stays attached to it.
    while at < len(body) and _is_bare_string(body[at]):
        at += 1
    new = parse_statements(code, depth)
    # A field's docstring travels with it: pair each member with what follows
    # until the next named member.
    groups: list[list[cst.CSTNode]] = []
    for node in new:
        if _named(node) is not None or not groups:
            groups.append([node])
        else:
            groups[-1].append(node)
    existing = {_named(m): m for m in body if _named(m) is not None}
    to_add: list[cst.CSTNode] = []
    for group in groups:
        name = _named(group[0])
        if name in existing:
            if not _same(existing[name], _code(group[0])):
                raise Conflict(f"{scope}.{name} already exists in {src.path} and differs")
            continue
        head = group[0]
        if isinstance(head, (cst.FunctionDef, cst.ClassDef)) and not head.leading_lines:
            group[0] = head.with_changes(leading_lines=[cst.EmptyLine(indent=False)])
        to_add.extend(group)
    body[at:at] = to_add
    src.set_block(block, body)


def add_call_keyword(
    src: PythonFile,
    scope: str,
    *,
    callee: str,
    keyword: str,
    value: str,
    where_keyword: str | None = None,
) -> None:
    """Every call to `callee` inside `scope` (only those already passing
    `where_keyword`, if given) passes `keyword=value`."""
    owner = src.find(scope)
    calls = [
        node
        for node in _walk(owner)
        if isinstance(node, cst.Call)
        and _calls(node, callee)
        and (
            where_keyword is None
            or any(a.keyword is not None and a.keyword.value == where_keyword for a in node.args)
        )
    ]
    if not calls:
        raise AnchorMissing(f"{scope} call to `{callee}(...)`", src.path)
    for call in calls:
        if any(a.keyword is not None and a.keyword.value == keyword for a in call.args):
            continue
        args = list(call.args)
        # The new argument ends the call, so it takes the last argument's
        # comma (and the layout before the closing paren); the old last one
        # takes the separator its predecessor uses.
        closing = args[-1].comma if args else cst.MaybeSentinel.DEFAULT
        if len(args) >= 2:
            args[-1] = args[-1].with_changes(comma=args[-2].comma)
        elif args:
            args[-1] = args[-1].with_changes(
                comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
            )
        new_arg = _keyword(keyword, cst.parse_expression(value)).with_changes(comma=closing)
        src.replace(call, call.with_changes(args=[*args, new_arg]))


def add_parameter(
    src: PythonFile,
    function: str,
    *,
    name: str,
    before: str | None = None,
    annotation: str | None = None,
    default: str | None = None,
) -> None:
    """Give `function` a parameter `name` just before parameter `before` (at
    the end if None), laid out like its neighbour (same comma and line break).
    A top-level function defined once per platform branch gets it in each
    definition, so every platform's signature stays the same."""
    for index in range(len(src.definitions(function))):
        # Looked up again each time: an edit gives the module new nodes.
        node = src.definitions(function)[index]
        _add_parameter(src, node, function, name, before, annotation, default)


def _add_parameter(
    src: PythonFile,
    node: cst.CSTNode,
    function: str,
    name: str,
    before: str | None,
    annotation: str | None,
    default: str | None,
) -> None:
    params = list(node.params.params)  # type: ignore[attr-defined]
    names = [p.name.value for p in params]
    if name in names:
        return
    if before is None:
        at = len(params)
    elif before in names and names.index(before) > 0:
        at = names.index(before)
    else:
        raise AnchorMissing(f"{function} parameter `{before}`", src.path)
    new = params[at - 1].with_changes(
        name=cst.Name(name),
        annotation=cst.Annotation(cst.parse_expression(annotation)) if annotation else None,
        default=cst.parse_expression(default) if default else None,
        # PEP 8: spaces around `=` only after an annotation.
        equal=cst.AssignEqual(*[cst.SimpleWhitespace(" " if annotation else "")] * 2)
        if default
        else cst.MaybeSentinel.DEFAULT,
    )
    if before is None and at >= 2:
        # The old last parameter now separates like the others do.
        params[at - 1] = params[at - 1].with_changes(comma=params[at - 2].comma)
    params.insert(at, new)
    new_params = node.params.with_changes(params=params)  # type: ignore[attr-defined]
    src.replace(node, node.with_changes(params=new_params))


def after_blank_line(code: str) -> str:
    """`code` set off by one blank line from the statement it follows."""
    return "\n\n" + code


def enclose(src: PythonFile, scope: str, *, anchor: Shape, code: str, done: Shape) -> None:
    """Put the anchor statement inside `code`, in place of its `...` statement
    (a branch that keeps what was there); the comments above the anchor head
    `code`. `done` recognises the result."""
    if src.has_statement(scope, done):
        return
    block, index, depth = src.locate(scope, anchor)
    body = list(_body_of(block))
    old = body[index]
    new = parse_statements(code, depth)
    placeholder = next((n for statement in new for n in _walk(statement) if _ellipsis(n)), None)
    if placeholder is None:
        raise EngineError("enclose: the code has no `...` statement for the anchor to go in")
    kept = old.with_changes(leading_lines=[])  # type: ignore[attr-defined]
    new = [statement.deep_replace(placeholder, kept) for statement in new]  # type: ignore[misc]
    new[0] = new[0].with_changes(leading_lines=[*old.leading_lines, *new[0].leading_lines])  # type: ignore[attr-defined]
    body[index : index + 1] = new
    src.set_block(block, body)


def insert_below_comments(src: PythonFile, scope: str, *, anchor: Shape, code: str) -> None:
    """Put `code` right before the anchor statement but below the comments
    above it, which then head both (once)."""
    block, index, depth = src.locate(scope, anchor)
    new = parse_statements(code, depth)
    body = list(_body_of(block))
    if _already_there(body, index - len(new), new):
        return
    comments = body[index].leading_lines  # type: ignore[attr-defined]
    new[0] = new[0].with_changes(leading_lines=[*comments, *new[0].leading_lines])
    body[index : index + 1] = [*new, body[index].with_changes(leading_lines=[])]
    src.set_block(block, body)


def add_definitions(
    src: PythonFile, *, code: str, after: Shape | None = None, before: Shape | None = None
) -> None:
    """Put module-level definitions (functions, classes, constants, each with
    its comments) right after or before the anchor, two blank lines above
    each as PEP 8 spaces them (once)."""
    anchor = after or before
    if anchor is None:
        raise EngineError("add_definitions needs an anchor: after= or before=")
    block, index, _ = src.locate("", anchor)
    spaced = [
        node.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine(), *_comments(node)])
        for node in parse_statements(code)
    ]
    body = list(_body_of(block))
    at = index + 1 if after is not None else index
    there = at if after is not None else at - len(spaced)
    if _already_there(body, there, spaced):
        return
    body[at:at] = spaced
    following = at + len(spaced)
    if isinstance(block, cst.Module) and following < len(body):
        # What follows new top-level definitions is spaced from them as PEP 8 says.
        lines = list(body[following].leading_lines)  # type: ignore[attr-defined]
        blank = next((i for i, line in enumerate(lines) if line.comment), len(lines))
        if blank < 2:
            spaced_lines = [cst.EmptyLine()] * (2 - blank) + lines
            body[following] = body[following].with_changes(leading_lines=spaced_lines)
    src.set_block(block, body)


def insert_element(src: PythonFile, scope: str, *, anchor: Shape, element: str, after: str) -> None:
    """The tuple or list the anchor statement assigns gains `element` right
    after its element `after`, laid out like it (once)."""
    block, index, _ = src.locate(scope, anchor)
    statement_line = _body_of(block)[index]
    value = statement_line.body[0].value  # type: ignore[attr-defined]
    if not isinstance(value, (cst.Tuple, cst.List)):
        raise AnchorMissing(f"{scope} {anchor.describe} as a tuple or list", src.path)
    elements = list(value.elements)
    shapes = [_shape(_code(e).rstrip(", \n")) for e in elements]
    if _shape(after) not in shapes:
        raise AnchorMissing(f"{scope} element `{after}` of {anchor.describe}", src.path)
    at = shapes.index(_shape(after)) + 1
    if at < len(shapes) and shapes[at] == _shape(element):
        return
    new = cst.ensure_type(cst.parse_expression(f"({element},)"), cst.Tuple).elements[0]
    elements.insert(at, new.with_changes(comma=elements[at - 1].comma))
    src.replace(value, value.with_changes(elements=elements))
