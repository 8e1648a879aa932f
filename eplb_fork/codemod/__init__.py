"""The edit vocabulary patches are written in.

Every edit finds its anchor by meaning (a class, a method, a field, a statement
of a given shape), never by line number or text, so it survives a fork that
reformatted, reordered or extended the file. Statements are compared by their
Python AST, which ignores formatting and comments.

Every edit is convergent: it describes the state it wants, so running it on a
tree that already has that state changes nothing. That is how a re-applied
patch is recognised as "already applied".

A missing anchor raises `AnchorMissing` naming the anchor and the file.

A verb takes the file and the scope it edits by position (the scope is a
dotted name: "" for the module, "EplbState.step"), everything else by
keyword: `anchor` (a Shape), `code`, `done`, `callee`, `keyword`, ...

The package by job: `shapes` (what anchors look like), `pyfile` (a file
and its scopes), `imports`, `additions` and `rewrites` (the edits),
`payload` (files and fragments from this repo), on `nodes` (shared libcst
helpers) and `base` (errors, the tree).
"""

from eplb_fork.codemod.additions import (
    add_call_keyword,
    add_definitions,
    add_members,
    add_parameter,
    after_blank_line,
    append_to,
    enclose,
    insert_after,
    insert_before,
    insert_below_comments,
    insert_element,
)
from eplb_fork.codemod.base import AnchorMissing, Conflict, Tree
from eplb_fork.codemod.imports import constrain_field, ensure_import, import_names
from eplb_fork.codemod.nodes import INDENT, parse_statements
from eplb_fork.codemod.payload import Fragments, bring_file
from eplb_fork.codemod.pyfile import PythonFile, python_file
from eplb_fork.codemod.rewrites import (
    remove_element,
    remove_parameter,
    remove_statement,
    replace_argument,
    replace_decorator,
    replace_definition,
    replace_docstring,
    replace_statement,
    set_call_keyword,
)
from eplb_fork.codemod.shapes import (
    Shape,
    assigns,
    assigns_item,
    call_statement,
    containing,
    defines,
    docstring,
    if_block,
    if_defining,
    statement,
    uses,
    with_block,
)

__all__ = [
    "AnchorMissing",
    "Conflict",
    "Fragments",
    "INDENT",
    "PythonFile",
    "Shape",
    "Tree",
    "add_call_keyword",
    "add_definitions",
    "add_members",
    "add_parameter",
    "after_blank_line",
    "append_to",
    "assigns",
    "assigns_item",
    "bring_file",
    "call_statement",
    "constrain_field",
    "containing",
    "defines",
    "docstring",
    "enclose",
    "ensure_import",
    "if_block",
    "if_defining",
    "import_names",
    "insert_after",
    "insert_before",
    "insert_below_comments",
    "insert_element",
    "parse_statements",
    "python_file",
    "remove_element",
    "remove_parameter",
    "remove_statement",
    "replace_argument",
    "replace_decorator",
    "replace_definition",
    "replace_docstring",
    "replace_statement",
    "set_call_keyword",
    "statement",
    "uses",
    "with_block",
]
