"""The edit vocabulary on small in-memory files."""

from __future__ import annotations

import textwrap

import pytest

from eplb_fork.codemod import (
    AnchorMissing,
    Conflict,
    add_call_keyword,
    add_members,
    add_parameter,
    constrain_field,
    if_block,
    import_names,
    insert_after,
    python_file,
    replace_decorator,
    replace_statement,
    statement,
)


class MemoryTree:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = {k: textwrap.dedent(v) for k, v in files.items()}

    def exists(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> str:
        return self.files[path]

    def write(self, path: str, text: str) -> None:
        self.files[path] = text


def edited(source: str, edit) -> str:
    tree = MemoryTree({"m.py": source})
    with python_file(tree, "m.py") as src:
        edit(src)
    return tree.files["m.py"]


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
            src, "step", if_block("not is_dummy"), "if not is_dummy and gate():\n    record()\n",
            done=statement("if not is_dummy and gate():\n    record()\n"),
        )  # fmt: skip
        insert_after(src, "step", statement("done()"), "publish()")

    out = edited(source, edit)
    assert "    # a comment the fork added\n    if not is_dummy and gate():" in out
    assert out.rstrip().endswith("done()\n    publish()")
    assert edited(out, edit) == out


def test_missing_anchor_names_scope_and_shape():
    with pytest.raises(AnchorMissing, match=r"step `if ready:` not found in m.py"):
        edited("def step():\n    pass\n", lambda src: insert_after(
            src, "step", if_block("ready"), "x = 1"))  # fmt: skip
    with pytest.raises(AnchorMissing, match=r"C.missing not found in m.py"):
        edited(CONFIG, lambda src: constrain_field(src, "C.missing", gt=0))


def test_add_members_skips_identical_and_refuses_different():
    source = "class C:\n    def a(self):\n        return 1\n"
    method = "def b(self):\n    return 2\n"
    out = edited(source, lambda src: add_members(src, "C", method, after="a"))
    assert "\n\n    def b(self):\n        return 2\n" in out
    assert edited(out, lambda src: add_members(src, "C", method, after="a")) == out
    with pytest.raises(Conflict, match="C.b already exists"):
        edited(out, lambda src: add_members(src, "C", "def b(self):\n    return 3\n", after="a"))


def test_add_members_after_a_field_keeps_the_fields_docstring_with_it():
    source = 'class C:\n    a: int = 0\n    """About a."""\n    z: int = 9\n'
    field = 'b: int = 1\n"""About b."""\n'
    out = edited(source, lambda src: add_members(src, "C", field, after="a"))
    assert '    a: int = 0\n    """About a."""\n    b: int = 1\n    """About b."""\n    z' in out


def test_add_call_keyword_keeps_multiline_layout():
    source = """\
    def f():
        return g(
            a=1,
            b=2,
        )
    """
    out = edited(source, lambda src: add_call_keyword(src, "f", "g", "c", "3"))
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
        add_parameter(src, "k", "top_k", before="BLOCK")
        add_parameter(src, "k", "extra", annotation="int | None", default="None")

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
    once = edited(KERNEL, lambda src: replace_decorator(src, "kernel", "triton.jit", new))
    assert once == KERNEL.replace("@triton.jit", f"@{new}")
    assert edited(once, lambda src: replace_decorator(src, "kernel", "triton.jit", new)) == once
    with pytest.raises(AnchorMissing, match="kernel decorator `@numba.jit`"):
        edited(KERNEL, lambda src: replace_decorator(src, "kernel", "numba.jit", new))


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
