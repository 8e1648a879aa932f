"""The edit vocabulary on small in-memory files: what each verb writes, once
(a second run changes nothing), and what it refuses."""

from __future__ import annotations

import textwrap

import pytest

from eplb_fork.codemod import (
    AnchorMissing,
    Conflict,
    add_call_keyword,
    add_definitions,
    add_members,
    add_parameter,
    assigns,
    constrain_field,
    defines,
    import_names,
    replace_decorator,
    replace_definition,
    replace_docstring,
)
from eplb_fork.tests.memory_tree import edited

CONFIG = """\
class C:
    plain: int = 3
    bounded: int = Field(default=0, ge=0)
    already: int = Field(default=5, gt=0)
"""


def test_constrain_field_wraps_plain_default_and_extends_field_calls():
    def edit(src):
        constrain_field(src, "C.plain", gt=0)
        constrain_field(src, "C.bounded", le=9)
        constrain_field(src, "C.already", gt=0)

    out = edited(CONFIG, edit)
    assert "plain: int = Field(default=3, gt=0)" in out
    assert "bounded: int = Field(default=0, ge=0, le=9)" in out
    assert "already: int = Field(default=5, gt=0)" in out
    assert edited(out, edit) == out  # convergent


def test_constrain_field_refuses_a_different_existing_bound():
    with pytest.raises(Conflict, match="already has gt=0"):
        edited(CONFIG, lambda src: constrain_field(src, "C.already", gt=1))


def test_add_members_skips_identical_and_refuses_different():
    source = "class C:\n    def a(self):\n        return 1\n"
    method = "def b(self):\n    return 2\n"
    out = edited(source, lambda src: add_members(src, "C", code=method, after="a"))
    assert "\n\n    def b(self):\n        return 2\n" in out
    assert edited(out, lambda src: add_members(src, "C", code=method, after="a")) == out
    with pytest.raises(Conflict, match="C.b already exists"):
        edited(out, lambda src: add_members(src, "C", code="def b(self):\n    return 3\n", after="a"))


def test_add_members_after_a_field_keeps_the_fields_docstring_with_it():
    source = 'class C:\n    a: int = 0\n    """About a."""\n    z: int = 9\n'
    field = 'b: int = 1\n"""About b."""\n'
    out = edited(source, lambda src: add_members(src, "C", code=field, after="a"))
    assert '    a: int = 0\n    """About a."""\n    b: int = 1\n    """About b."""\n    z' in out


def test_add_call_keyword_keeps_multiline_layout():
    source = """\
    def f():
        return g(
            a=1,
            b=2,
        )
    """
    out = edited(source, lambda src: add_call_keyword(src, "f", callee="g", keyword="c", value="3"))
    assert "        a=1,\n        b=2,\n        c=3,\n    )" in out


def test_add_parameter_before_a_name_and_at_the_end():
    source = """\
    def k(
        a,
        b,
        BLOCK: int,
    ):
        pass
    """

    def edit(src):
        add_parameter(src, "k", name="top_k", before="BLOCK")
        add_parameter(src, "k", name="extra", annotation="int | None", default="None")

    out = edited(source, edit)
    assert "    b,\n    top_k,\n    BLOCK: int,\n    extra: int | None = None,\n):" in out
    assert edited(out, edit) == out


KERNEL = """\
@other
@triton.jit
def kernel(x):
    pass
"""


def test_replace_decorator_keeps_the_others_and_is_idempotent():
    new = "triton.jit(do_not_specialize=['x'])"
    once = edited(KERNEL, lambda src: replace_decorator(src, "kernel", old="triton.jit", new=new))
    assert once == KERNEL.replace("@triton.jit", f"@{new}")
    assert edited(once, lambda src: replace_decorator(src, "kernel", old="triton.jit", new=new)) == once
    with pytest.raises(AnchorMissing, match="kernel decorator `@numba.jit`"):
        edited(KERNEL, lambda src: replace_decorator(src, "kernel", old="numba.jit", new=new))


IMPORTS = """\
# SPDX
from vllm.distributed import (
    get_ep_group,
    tensor_model_parallel_all_reduce,
)
from vllm.logger import init_logger
"""


def test_import_names_merges_in_isort_order_once():
    add = lambda src: import_names(src, "vllm.distributed", "get_dp_group", "GROUP")  # noqa: E731
    once = edited(IMPORTS, add)
    assert once == IMPORTS.replace(
        "(\n    get_ep_group,", "(\n    GROUP,\n    get_dp_group,\n    get_ep_group,"
    )
    assert edited(once, add) == once
    with pytest.raises(AnchorMissing, match="`from vllm.config import ...`"):
        edited(IMPORTS, lambda src: import_names(src, "vllm.config", "x"))


def test_add_definitions_spaces_them_as_pep8_once():
    source = "import os\n\n\ndef kernel():\n    pass\n\n\ndef launcher():\n    pass\n"
    code = "# Why the limit.\nLIMIT = 4\ndef helper():\n    pass\n"
    add = lambda src: add_definitions(src, code=code, after=defines("kernel"))  # noqa: E731
    once = edited(source, add)
    assert once == (
        "import os\n\n\ndef kernel():\n    pass\n\n\n# Why the limit.\nLIMIT = 4\n\n\n"
        "def helper():\n    pass\n\n\ndef launcher():\n    pass\n"
    )
    assert edited(once, add) == once
    before = edited(source, lambda src: add_definitions(src, code=code, before=defines("launcher")))
    assert before == once


def test_replace_docstring_and_definition_recognise_their_result():
    source = '''\
    class State:
        def set(self, n):
            """Old words
            on two lines."""
            self.n = n
    '''
    doc = '"""New words\non two lines."""\n'
    method = 'def set(self, n, m=()):\n    """Set both."""\n    self.n, self.m = n, m\n'
    once = edited(source, lambda src: replace_docstring(src, "State.set", code=doc))
    assert '        """New words\n        on two lines."""\n' in once
    assert edited(once, lambda src: replace_docstring(src, "State.set", code=doc)) == once
    swapped = edited(source, lambda src: replace_definition(src, "State", code=method))
    assert swapped == "class State:\n" + textwrap.indent(method, "    ")
    assert edited(swapped, lambda src: replace_definition(src, "State", code=method)) == swapped


def test_removals_and_set_call_keyword_edit_once():
    from eplb_fork.codemod import (
        remove_element,
        remove_parameter,
        remove_statement,
        set_call_keyword,
    )

    source = """\
    def kernel(a, b, BINS, BLOCK):
        # Sized per call.
        bins = BINS * 2
        args = (a, b, bins, BLOCK)
        return run(view=a, args=args)
    """

    def edit(src):
        remove_parameter(src, "kernel", name="BINS")
        remove_statement(src, "kernel", anchor=assigns("bins"))
        remove_element(src, "kernel", anchor=assigns("args"), element="bins")
        set_call_keyword(src, "kernel", callee="run", keyword="view", value="b")

    once = edited(source, edit)
    assert once == (
        "def kernel(a, b, BLOCK):\n"
        "    args = (a, b, BLOCK)\n"
        "    return run(view=b, args=args)\n"
    )
    assert edited(once, edit) == once
    last = edited("def f(a, b):\n    t = (a, b)\n", lambda src: (
        remove_parameter(src, "f", name="b"), remove_element(src, "f", anchor=assigns("t"), element="b")))
    assert last == "def f(a):\n    t = (a,)\n"
    with pytest.raises(AnchorMissing):
        edited(source, lambda src: set_call_keyword(src, "kernel", callee="run", keyword="nope", value="1"))


def test_replace_argument_by_code_once_and_names_a_missing_one():
    from eplb_fork.codemod import replace_argument

    source = """\
    def launch(view):
        kernel[grid](
            ids,
            view.shape[0],
            size=view.shape[0],
        )
    """
    edit = lambda src: replace_argument(src, "launch", callee="kernel[...]", old="view.shape[0]", new="view.shape[-1]")  # noqa: E731
    out = edited(source, edit)
    assert out.count("view.shape[-1]") == 2 and "shape[0]" not in out
    assert edited(out, edit) == out
    with pytest.raises(AnchorMissing, match="passing `other`"):
        edited(source, lambda src: replace_argument(src, "launch", callee="kernel[...]", old="other", new="x"))


def test_add_parameter_reaches_every_platform_branchs_definition():
    source = """\
    if on_gpu():

        def entry(ids, view):
            return launch(ids, view)

    else:

        def entry(ids, view):
            return ids
    """
    edit = lambda src: add_parameter(src, "entry", name="rows", default="None")  # noqa: E731
    out = edited(source, edit)
    assert out.count("def entry(ids, view, rows=None):") == 2
    assert edited(out, edit) == out
