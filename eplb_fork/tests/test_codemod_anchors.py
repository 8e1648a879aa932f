"""Anchors: how an edit finds its place by what is there (a statement's
shape, what a block holds, a name a statement uses) in a fork that drifted,
and how it names what it did not find."""

from __future__ import annotations

import textwrap

import pytest

from eplb_fork.codemod import (
    AnchorMissing,
    after_blank_line,
    append_to,
    assigns,
    call_statement,
    constrain_field,
    containing,
    enclose,
    if_block,
    insert_after,
    insert_below_comments,
    insert_element,
    replace_statement,
    statement,
    uses,
)
from eplb_fork.tests.memory_tree import edited, locate_in_step


def test_anchors_survive_reformatting_and_comments():
    source = """\
    def step(self, is_dummy):
        # a comment the fork added
        if (
            not is_dummy
        ):  # and another
            record()
        done()
    """

    def edit(src):
        replace_statement(
            src, "step", anchor=if_block("not is_dummy"), code="if not is_dummy and gate():\n    record()\n")
        insert_after(src, "step", anchor=statement("done()"), code="publish()")

    out = edited(source, edit)
    assert "    # a comment the fork added\n    if not is_dummy and gate():" in out
    assert out.rstrip().endswith("done()\n    publish()")
    assert edited(out, edit) == out


def test_missing_anchor_names_scope_and_shape():
    with pytest.raises(AnchorMissing, match=r"step `if ready:` not found in m.py"):
        edited("def step():\n    pass\n", lambda src: insert_after(
            src, "step", anchor=if_block("ready"), code="x = 1"))
    with pytest.raises(AnchorMissing, match=r"C.missing not found in m.py"):
        edited("class C:\n    x: int = 1\n", lambda src: constrain_field(src, "C.missing", gt=0))


def test_containing_recognises_a_block_by_what_was_put_inside():
    source = """\
    def step(self):
        if due:
            if busy:
                publish()
                return
    """
    due = if_block("due")
    _, index, _ = locate_in_step(source, containing(due, call_statement("publish")))
    assert index == 0
    with pytest.raises(AnchorMissing, match="holding call to `other"):
        locate_in_step(source, containing(due, call_statement("other")))
    appended = edited(source, lambda src: append_to(src, "step", code=after_blank_line("done()")))
    assert appended == textwrap.dedent(source) + "\n    done()\n"


# The helpers that let later patches edit earlier patches' code by name.


def test_uses_finds_the_simple_statement_that_names_it_in_nested_blocks():
    source = """\
    def kernel(ptr, obj):
        obj.ptr = f(ptr=1)
        if FLAG:
            # Why.
            x = x & load(ptr)
    """
    swap = lambda src: replace_statement(src, "kernel", anchor=uses("ptr"), code="x = x & own", done=uses("own"))  # noqa: E731
    once = edited(source, swap)
    assert "    # Why.\n        x = x & own\n" in once and "obj.ptr = f(ptr=1)" in once
    assert edited(once, swap) == once
    assert edited(source, lambda src: src.locate("kernel", uses("obj.ptr")))
    with pytest.raises(AnchorMissing, match="statement using `other`"):
        edited(source, lambda src: src.locate("kernel", uses("other")))


def test_enclose_keeps_the_anchor_in_the_placeholder_branch_once():
    source = """\
    def kernel(x):
        y = x
        # Why one add per id.
        add(y)
    """
    code = "if BINS > 0:\n    add_all(y)\nelse:\n    ...\n"
    wrap = lambda src: enclose(src, "kernel", anchor=call_statement("add"), code=code, done=if_block("BINS > 0"))  # noqa: E731
    once = edited(source, wrap)
    assert once == textwrap.dedent("""\
    def kernel(x):
        y = x
        # Why one add per id.
        if BINS > 0:
            add_all(y)
        else:
            add(y)
    """)
    assert edited(once, wrap) == once


def test_insert_below_comments_and_insert_element_edit_a_tuple_in_place():
    source = """\
    def launch(n, k):
        # In the kernel's order.
        args = (
            n,
            k,
            None,
        )
    """
    args = assigns("args")

    def edit(src):
        insert_below_comments(src, "launch", anchor=args, code="window = (0, n)")
        insert_element(src, "launch", anchor=args, element="*window", after="k")

    once = edited(source, edit)
    assert once == textwrap.dedent("""\
    def launch(n, k):
        # In the kernel's order.
        window = (0, n)
        args = (
            n,
            k,
            *window,
            None,
        )
    """)
    assert edited(once, edit) == once
    with pytest.raises(AnchorMissing, match="element `top_k`"):
        edited(source, lambda src: insert_element(src, "launch", anchor=args, element="x", after="top_k"))
