"""The shared recording flag starts set (`torch.ones`), whatever the
recording rule says for the first step, and expert_load_pass is zeroed only
on steps that record. vLLM starts the rearrangement counter at
step_interval - step_interval // 4, so when step_interval // 4 exceeds
window_size (PR #36261's own 100/10, or 3000/500) the first forward runs
outside the window with the flag set: its load stays in the pass and lands
in window slot 0 with the first recorded step's. A profile run's dummy
routing, recorded with the flag set, does the same.

The flag now starts from the rule for the first step, and the profile
step drops the pass before its dummy rearrangement (0.33 already drops a
dummy step's pass before that point; 0.31 and 0.32 do not). The defaults
(3000/1000) put the first forward inside the window, where it is meant to
count, and are unchanged. Found and fixed on the 0.19 backport of the PR;
this is the same change on upstream's `_propagate_shared_tensors`.
"""

from eplb_fork.codemod import (
    Fragments,
    bring_file,
    if_block,
    insert_before,
    python_file,
    replace_statement,
    statement,
)

SUBJECT = "[EPLB] Keep every load window slot to its own step"
ORIGIN = "vendor"
DATE = "2026-11-30T07:20:00+00:00"

EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"


def apply(tree):
    code = Fragments("series/fragments/eplb_clean_window_slots.py")
    allocate = code.body("allocate_flag_from_the_rule")
    with python_file(tree, EPLB_STATE) as src:
        replace_statement(
            src, "EplbState._propagate_shared_tensors",
            if_block("self.should_record_tensor is None and layer_states"),
            allocate, done=statement(allocate),
        )  # fmt: skip
        insert_before(
            src, "EplbState.step", statement("self.rearrange(is_profile=True)"),
            code.body("drop_profile_load"),
        )  # fmt: skip
    bring_file(tree, "tests/distributed/eplb/eplb_single_rank.py")
    bring_file(tree, "tests/distributed/eplb/test_eplb_first_window_slot.py")
