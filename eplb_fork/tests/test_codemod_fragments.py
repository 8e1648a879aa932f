"""Fragments: how new code is taken from its lint-clean holder module."""

from __future__ import annotations

import textwrap

import pytest

from eplb_fork.codemod import call_statement, insert_after
from eplb_fork.tests.memory_tree import edited

FRAGMENT = '''\
"""A fragment: where its pieces go."""

import torch

from vllm.triton_utils import tl

# Why the limit.
LIMIT = 2**62


# Why the kernel.
@triton.jit
def kernel(x):
    """What the kernel does."""
    return tl.load(x)


class Target:
    """Members after `first`."""

    flag: torch.Tensor | None = None
    """The flag's docstring."""

    def method(self) -> None:
        """What the method does.

        In two paragraphs.
        """
        self.flag = None


def share_flag(self, layer):
    """In `Target.setup`, after the layer is built."""
    # Why the flag is shared.
    layer.flag = self.flag
    """
    An attribute docstring,
    on two lines.
    """
'''


@pytest.fixture
def fragments(tmp_path, monkeypatch):
    import eplb_fork.codemod as codemod
    import eplb_fork.codemod.payload

    monkeypatch.setattr(codemod.payload, "REPO_ROOT", tmp_path)
    (tmp_path / "fragment.py").write_text(FRAGMENT)
    return codemod.Fragments("fragment.py")


def test_fragments_definition_keeps_comments_and_decorators(fragments):
    assert fragments.definition("kernel") == (
        '# Why the kernel.\n@triton.jit\ndef kernel(x):\n    """What the kernel does."""\n'
        "    return tl.load(x)\n"
    )
    assert fragments.definition("LIMIT") == "# Why the limit.\nLIMIT = 2**62\n"


def test_fragments_members_keep_field_docstrings_and_drop_the_class_docstring(fragments):
    assert fragments.members("Target") == textwrap.dedent('''\
        flag: torch.Tensor | None = None
        """The flag's docstring."""

        def method(self) -> None:
            """What the method does.

            In two paragraphs.
            """
            self.flag = None
        ''')


def test_fragments_body_drops_the_holder_docstring_and_lands_indented(fragments):
    body = fragments.body("share_flag")
    assert body == textwrap.dedent('''\
        # Why the flag is shared.
        layer.flag = self.flag
        """
        An attribute docstring,
        on two lines.
        """
        ''')
    target = """\
    class Target:
        def setup(self, layer):
            build(layer)
    """
    add = lambda src: insert_after(src, "Target.setup", anchor=call_statement("build"), code=body)  # noqa: E731
    once = edited(target, add)
    assert once == textwrap.dedent(target) + textwrap.indent(body, " " * 8, str.strip)
    assert edited(once, add) == once


def test_fragments_code_is_everything_but_docstring_and_imports(fragments):
    code = fragments.code()
    assert "import" not in code and "where its pieces go" not in code
    assert code.lstrip().startswith("# Why the limit.\nLIMIT = 2**62\n")
    assert "def share_flag(self, layer):" in code


def test_fragments_body_drops_a_final_return(tmp_path, monkeypatch):
    import eplb_fork.codemod as codemod
    import eplb_fork.codemod.payload

    monkeypatch.setattr(codemod.payload, "REPO_ROOT", tmp_path)
    (tmp_path / "f.py").write_text(
        'def size(n):\n    """Where."""\n    # Why.\n    block = n * 2\n    return block\n'
    )
    assert codemod.Fragments("f.py").body("size") == "# Why.\nblock = n * 2\n"
