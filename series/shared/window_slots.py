"""The window-slot fix both lines make (patch `eplb_clean_window_slots`):
the same edit of EplbState, on the method each line's base allocates the
shared record flag in."""

from eplb_fork.codemod import (
    Fragments,
    if_block,
    insert_before,
    python_file,
    replace_statement,
    statement,
)
from eplb_fork.fork_files import EPLB_STATE

CODE = "series/shared/fragments/eplb_clean_window_slots.py"


def fix_window_slots(tree, flag_allocator: str) -> None:
    """The change itself, given the method that allocates the shared flag."""
    code = Fragments(CODE)
    allocate = code.body("allocate_flag_from_the_rule")
    with python_file(tree, EPLB_STATE) as src:
        replace_statement(
            src,
            flag_allocator,
            anchor=if_block("self.should_record_tensor is None and layer_states"),
            code=allocate,
        )
        insert_before(
            src,
            "EplbState.step",
            anchor=statement("self.rearrange(is_profile=True)"),
            code=code.body("drop_profile_load"),
        )
