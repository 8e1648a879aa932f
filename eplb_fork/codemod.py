"""The edit vocabulary patches are written in.

Every edit finds its anchor by meaning (a class, a method, a field, a statement
of a given shape), never by line number or text, so it survives a fork that
reformatted, reordered or extended the file. Statements are compared by their
Python AST, which ignores formatting and comments.

Every edit is convergent: it describes the state it wants, so running it on a
tree that already has that state changes nothing. That is how a re-applied
patch is recognised as "already applied".

A missing anchor raises `AnchorMissing` naming the anchor and the file.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import libcst as cst

from eplb_fork import REPO_ROOT, EngineError


class AnchorMissing(EngineError):
    def __init__(self, anchor: str, path: str) -> None:
        super().__init__(f"{anchor} not found in {path}")
        self.anchor = anchor
        self.path = path


class Conflict(EngineError):
    """The target already holds something else where the patch would write."""


class Tree(Protocol):
    def exists(self, path: str) -> bool: ...
    def read(self, path: str) -> str: ...
    def write(self, path: str, text: str) -> None: ...


# --------------------------------------------------------------------------
# Statement shapes


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


# --------------------------------------------------------------------------
# Scopes: "" is the module, "Cls", "Cls.method", "function"


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


# --------------------------------------------------------------------------
# Edits


def _keyword(name: str, value: cst.BaseExpression) -> cst.Arg:
    """`name=value`, spaced as black and ruff write keyword arguments."""
    no_space = cst.SimpleWhitespace("")
    return cst.Arg(keyword=cst.Name(name), value=value, equal=cst.AssignEqual(no_space, no_space))


def constrain_field(src: PythonFile, field: str, **constraints: object) -> None:
    """`x: T = v` becomes `x: T = Field(default=v, k=c, ...)`; an existing
    `Field(...)` call gains the missing keywords (a different value for one it
    has is a conflict)."""
    assign = src.find(field).body[0]  # type: ignore[attr-defined]
    value = assign.value
    wanted = {k: cst.parse_expression(repr(v)) for k, v in constraints.items()}
    if value is None:
        raise Conflict(f"{field} in {src.path} has no default to constrain")
    if isinstance(value, cst.Call) and _code(value.func) == "Field":
        present = {a.keyword.value: a.value for a in value.args if a.keyword is not None}
        for name, expr in wanted.items():
            if name in present and not _same(present[name], _code(expr)):
                raise Conflict(f"{field} in {src.path} already has {name}={_code(present[name])}")
        missing = [_keyword(k, v) for k, v in wanted.items() if k not in present]
        new_value = value.with_changes(args=[*value.args, *missing])
    else:
        args = [_keyword("default", value), *(_keyword(k, v) for k, v in wanted.items())]
        new_value = cst.Call(func=cst.Name("Field"), args=args)
    src.replace(assign, assign.with_changes(value=new_value))


def ensure_import(src: PythonFile, code: str) -> None:
    """Add a module-level import after the last top-of-file import, unless an
    identical one is there."""
    shape = statement(code)
    if src.has_statement("", shape):
        return
    body = list(src.module.body)
    last_import = max(
        (i for i, s in enumerate(body)
         if isinstance(s, cst.SimpleStatementLine)
         and isinstance(s.body[0], (cst.Import, cst.ImportFrom))),
        default=-1,
    )  # fmt: skip
    body[last_import + 1 : last_import + 1] = parse_statements(code)
    src.set_block(src.module, body)


def import_names(src: PythonFile, module: str, *names: str) -> None:
    """Add `names` to the module-level `from module import ...`, in isort's
    order (constants, classes, then the rest), one per line as ruff formats
    a parenthesized import."""

    def imports_from_module(node: cst.CSTNode) -> bool:
        return (
            isinstance(node, cst.SimpleStatementLine)
            and isinstance(node.body[0], cst.ImportFrom)
            and node.body[0].module is not None
            and not node.body[0].relative
            and _code(node.body[0].module) == module
            and not isinstance(node.body[0].names, cst.ImportStar)
        )

    body = list(src.module.body)
    at = next((i for i, node in enumerate(body) if imports_from_module(node)), None)
    if at is None:
        raise AnchorMissing(f"`from {module} import ...`", src.path)
    present = [
        _code(alias.name) + (f" as {_code(alias.asname.name)}" if alias.asname else "")
        for alias in body[at].body[0].names  # type: ignore[attr-defined]
    ]
    if all(name in present for name in names):
        return

    def isort_key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    merged = sorted({*present, *names}, key=isort_key)
    code = f"from {module} import (\n" + "".join(f"    {n},\n" for n in merged) + ")\n"
    body[at] = parse_statements(code)[0].with_changes(leading_lines=body[at].leading_lines)
    src.set_block(src.module, body)


def _already_there(body: Sequence[cst.CSTNode], at: int, new: list[cst.CSTNode]) -> bool:
    window = body[at : at + len(new)]
    return (
        at >= 0
        and len(window) == len(new)
        and all(_same(old, _code(node)) for old, node in zip(window, new, strict=False))
    )


def _insert(src: PythonFile, scope: str, anchor: Shape, code: str, *, after: bool) -> None:
    block, index, depth = src.locate(scope, anchor)
    new = parse_statements(code, depth)
    body = list(_body_of(block))
    at = index + 1 if after else index
    if _already_there(body, at if after else at - len(new), new):
        return
    body[at:at] = new
    src.set_block(block, body)


def insert_after(src: PythonFile, scope: str, anchor: Shape, code: str) -> None:
    """Put `code` right after the anchor statement (once)."""
    _insert(src, scope, anchor, code, after=True)


def insert_before(src: PythonFile, scope: str, anchor: Shape, code: str) -> None:
    """Put `code` right before the anchor statement (once)."""
    _insert(src, scope, anchor, code, after=False)


def append_to(src: PythonFile, scope: str, code: str) -> None:
    """Put `code` at the end of a function or class body (once)."""
    block, body, depth = src.body(scope)
    new = parse_statements(code, depth)
    if _already_there(body, len(body) - len(new), new):
        return
    src.set_block(block, [*body, *new])


def replace_statement(
    src: PythonFile, scope: str, anchor: Shape, code: str, *, done: Shape,
    keep_comments: bool = True,
) -> None:  # fmt: skip
    """Swap the anchor statement for `code`, keeping the comments and blank
    lines above it (only the blank lines, if the comments describe what is
    replaced). `done` recognises the result, so a tree that already has it is
    left alone."""
    if src.has_statement(scope, done):
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


def add_members(src: PythonFile, scope: str, code: str, *, after: str) -> None:
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
    src: PythonFile, scope: str, callee: str, keyword: str, value: str,
    *, where_keyword: str | None = None,
) -> None:  # fmt: skip
    """Every call to `callee` inside `scope` (only those already passing
    `where_keyword`, if given) passes `keyword=value`."""
    owner = src.find(scope)
    calls = [
        node for node in _walk(owner)
        if isinstance(node, cst.Call) and _calls(node, callee)
        and (where_keyword is None or any(
            a.keyword is not None and a.keyword.value == where_keyword for a in node.args))
    ]  # fmt: skip
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


def _calls(call: cst.Call, callee: str) -> bool:
    """`callee` names the function; `kernel[...]` matches a launch with any grid."""
    func = call.func
    if callee.endswith("[...]"):
        if not isinstance(func, cst.Subscript):
            return False
        func, callee = func.value, callee.removesuffix("[...]")
    return _shape(_code(func)) == _shape(callee)


def add_parameter(
    src: PythonFile, function: str, name: str, *, before: str | None = None,
    annotation: str | None = None, default: str | None = None,
) -> None:  # fmt: skip
    """Give `function` a parameter `name` just before parameter `before` (at
    the end if None), laid out like its neighbour (same comma and line break).
    A top-level function defined once per platform branch gets it in each
    definition, so every platform's signature stays the same."""
    for index in range(len(src.definitions(function))):
        # Looked up again each time: an edit gives the module new nodes.
        node = src.definitions(function)[index]
        _add_parameter(src, node, function, name, before, annotation, default)


def _add_parameter(
    src: PythonFile, node: cst.CSTNode, function: str, name: str, before: str | None,
    annotation: str | None, default: str | None,
) -> None:  # fmt: skip
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


def replace_decorator(src: PythonFile, function: str, old: str, new: str) -> None:
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


def containing(outer: Shape, inner: Shape) -> Shape:
    """A statement of shape `outer` whose blocks (its own, and those nested in
    its if/with/for/while/try) hold a statement of shape `inner`: a block
    recognised by what was put inside it."""

    def matches(node: cst.CSTNode) -> bool:
        return outer.matches(node) and any(
            inner.matches(member) for block, _ in _blocks(node, 0) for member in _body_of(block)
        )

    return Shape(f"{outer.describe} holding {inner.describe}", matches)


def after_blank_line(code: str) -> str:
    """`code` set off by one blank line from the statement it follows."""
    return "\n\n" + code


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


def _ellipsis(node: cst.CSTNode) -> bool:
    return (
        isinstance(node, cst.SimpleStatementLine)
        and isinstance(node.body[0], cst.Expr)
        and isinstance(node.body[0].value, cst.Ellipsis)
    )


def enclose(src: PythonFile, scope: str, anchor: Shape, code: str, *, done: Shape) -> None:
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


def insert_below_comments(src: PythonFile, scope: str, anchor: Shape, code: str) -> None:
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
    src: PythonFile, code: str, *, after: Shape | None = None, before: Shape | None = None
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


def insert_element(src: PythonFile, scope: str, anchor: Shape, element: str, *, after: str) -> None:
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


def replace_definition(src: PythonFile, scope: str, code: str) -> None:
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


def replace_docstring(src: PythonFile, scope: str, code: str) -> None:
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


def remove_statement(src: PythonFile, scope: str, anchor: Shape) -> None:
    """Drop the anchor statement with the comments and blank lines above it
    (what they describe goes with it); one already gone is left alone."""
    if not src.has_statement(scope, anchor):
        return
    block, index, _ = src.locate(scope, anchor)
    body = list(_body_of(block))
    del body[index]
    src.set_block(block, body)


def remove_element(src: PythonFile, scope: str, anchor: Shape, element: str) -> None:
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


def remove_parameter(src: PythonFile, function: str, name: str) -> None:
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


def set_call_keyword(src: PythonFile, scope: str, callee: str, keyword: str, value: str) -> None:
    """Every call to `callee` inside `scope` that passes `keyword` passes
    `value` for it instead."""
    owner = src.find(scope)
    calls = [
        node for node in _walk(owner)
        if isinstance(node, cst.Call) and _calls(node, callee)
        and any(a.keyword is not None and a.keyword.value == keyword for a in node.args)
    ]  # fmt: skip
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


def replace_argument(src: PythonFile, scope: str, callee: str, old: str, new: str) -> None:
    """Every call to `callee` inside `scope` passes `new` where it passed the
    positional or keyword argument `old` (compared as code, layout aside);
    calls already passing `new` are left alone."""
    owner = src.find(scope)
    calls = [
        node for node in _walk(owner)
        if isinstance(node, cst.Call) and _calls(node, callee)
    ]  # fmt: skip
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


# --------------------------------------------------------------------------
# Whole files and fragments that live in this repo


def bring_file(tree: Tree, path: str) -> None:
    """Copy our file at `path` into the fork at the same path. An existing file
    with other contents is never overwritten."""
    ours = (REPO_ROOT / path).read_text()
    if tree.exists(path):
        if tree.read(path) == ours:
            return
        raise Conflict(f"{path} already exists in the tree with other contents; not overwriting")
    tree.write(path, ours)


def _is_import(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.SimpleStatementLine) and isinstance(
        node.body[0], (cst.Import, cst.ImportFrom)
    )


class Fragments:
    """A patch's new code, kept in a real module under `series/fragments/`
    so that it is linted and read as code rather than as strings.

    The module holds three kinds of thing, each found by name:
    - definitions that land as they are (`definition`, or `code` for all of
      them): functions, classes, constants;
    - members for an existing class (`members`): the body of a class named
      like the target, fields with their docstrings and methods;
    - statements for an existing body (`body`): the body of a holder function
      named for what the statements do, its parameters the names they use.
    A holder's or a class's own docstring says where its code goes; it is
    not carried into the fork. Imports are the target file's business.
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
            node for node in self.module.body
            if not (_is_import(node) or _is_bare_string(node))
        ]  # fmt: skip
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


def _comments(node: cst.CSTNode) -> list[cst.EmptyLine]:
    """A node's leading comment lines, without the blank lines before them."""
    lines = list(node.leading_lines)  # type: ignore[attr-defined]
    while lines and lines[0].comment is None:
        lines.pop(0)
    return lines
