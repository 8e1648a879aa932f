"""The shared record flag is allocated set, whatever the recording rule says,
and a step that does not record leaves the expert load pass as it is. With
the defaults (step_interval 3000, window_size 1000, the counter starting at
2250) the first forward is 750 steps outside the window: it records, step()
does not copy or clear its pass, and its load is added to the first
recorded slot 750 steps later. A profile run's dummy load takes the same
path when no dummy step clears it (eager mode).

Allocate the flag with the rule's value for the first forward (log_stats as
the model runner passes it: eplb_config.log_balancedness), and clear the
pass on profile steps. The flag a forward sees is then always the decision
step() takes for it, so a non-recording forward leaves the pass empty and
each window slot holds exactly one step's load. The gating property test
now checks every slot after every step, with no exception left.
"""

from eplb_fork.codemod import (
    if_block,
    insert_before,
    python_file,
    replace_statement,
    statement,
)

SUBJECT = "[EPLB] Keep every load window slot to its own step"
ORIGIN = "vendor"
DATE = "2026-11-29T12:00:00+00:00"

EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"
GATE_TEST = "tests/distributed/eplb/test_eplb_record_gate.py"

ALLOCATE_FROM_THE_RULE = """
if self.should_record_tensor is None and layer_states:
    # Start from the rule: a set flag outside the window would leave the
    # first forward's load in the pass until the first recorded slot.
    self.should_record_tensor = torch.tensor(
        self._should_record_current_step(
            log_stats=self.parallel_config.eplb_config.log_balancedness
        ),
        dtype=torch.bool,
        device=self.device,
    )
"""

DROP_PROFILE_LOAD = """
# A profile run's routing is dummy data, not load.
for eplb_model_state in self.model_states.values():
    eplb_model_state.expert_load_pass.zero_()
"""


def apply(tree):
    with python_file(tree, EPLB_STATE) as src:
        replace_statement(
            src, "EplbState._init_should_record_tensor",
            if_block("self.should_record_tensor is None and layer_states"),
            ALLOCATE_FROM_THE_RULE, done=statement(ALLOCATE_FROM_THE_RULE),
        )  # fmt: skip
        insert_before(
            src, "EplbState.step", statement("self.rearrange(is_profile=True)"),
            DROP_PROFILE_LOAD,
        )  # fmt: skip
    with python_file(tree, GATE_TEST) as src:
        replace_statement(
            src, "", statement("FIRST_RECORDED_SLOT_LEAKS = True"),
            "FIRST_RECORDED_SLOT_LEAKS = False",
            done=statement("FIRST_RECORDED_SLOT_LEAKS = False"),
        )  # fmt: skip
