"""Module-level edits: a field's Pydantic constraints and imports. Each is
convergent: on a tree that already has what it adds, it changes nothing."""

from __future__ import annotations

import libcst as cst

from eplb_fork.codemod.base import AnchorMissing, Conflict
from eplb_fork.codemod.nodes import _code, _keyword, _same, parse_statements
from eplb_fork.codemod.pyfile import PythonFile
from eplb_fork.codemod.shapes import statement


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


def ensure_import(src: PythonFile, code: str, *, before: str | None = None) -> None:
    """Add a module-level import after the last top-of-file import (or, for
    isort's order, right before the import of module `before`), unless an
    identical one is there."""
    shape = statement(code)
    if src.has_statement("", shape):
        return
    body = list(src.module.body)
    imports = [
        i
        for i, s in enumerate(body)
        if isinstance(s, cst.SimpleStatementLine)
        and isinstance(s.body[0], (cst.Import, cst.ImportFrom))
    ]
    if before is None:
        at = max(imports, default=-1) + 1
    else:
        named = [i for i in imports if _imported_module(body[i]) == before]
        if not named:
            raise AnchorMissing(f"`from {before} import ...`", src.path)
        at = named[0]
    new = parse_statements(code)
    if before is not None:
        # It takes the place (and the blank lines above) of the one it precedes.
        new[0] = new[0].with_changes(leading_lines=body[at].leading_lines)
        body[at] = body[at].with_changes(leading_lines=[])
    body[at:at] = new
    src.set_block(src.module, body)


def _imported_module(line: cst.SimpleStatementLine) -> str | None:
    node = line.body[0]
    if isinstance(node, cst.ImportFrom) and node.module is not None and not node.relative:
        return _code(node.module)
    return None


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
