"""EplbState records every forward pass's expert load, although a
rearrangement only reads the last window_size recorded steps: with the
defaults (window 1000, interval 3000) two thirds of all recording is
overwritten unread, and each recording costs one global atomic per
(token, top-k slot) in the router.

Decide on the host, once per step, whether the coming forward's load
will be read: record iff the steps left until the next rearrangement are
at most window_size, or, with balancedness logging on, the steps left
until the next log line are. Publish the decision as one 0-dim bool
device tensor owned by EplbState, allocated when the first model is
added and shared by reference with every MoE layer's EplbLayerState of
every model, so one fill_() per step updates all of them and a CUDA graph
replay reads the current value.

step() now copies the pass into the window (and zeroes the pass and
advances the window index) only on recording steps, and refills the flag
at its end, ready for the next forward, including on the asynchronous
early return. Dummy and profile steps behave as before.
"""

from eplb_fork.codemod import (
    Fragments,
    add_members,
    after_blank_line,
    append_to,
    bring_file,
    call_statement,
    containing,
    if_block,
    insert_after,
    insert_before,
    python_file,
    replace_statement,
)
from series.backport.sites import ELASTIC_EXECUTE, ELASTIC_SWITCH, EPLB_STATE

SUBJECT = "[EPLB] Record expert load only inside the rearrangement window"
ORIGIN = "backport, https://github.com/vllm-project/vllm/pull/36261"
APPLIED_UPSTREAM = "v0.20.0, https://github.com/vllm-project/vllm/pull/36261"
DATE = "2026-03-31T12:01:00+00:00"

PUBLISH_FLAG = "self._update_layer_should_record(log_stats=log_stats)"


def apply(tree):
    code = Fragments("series/backport/fragments/eplb_state_record_gate.py")
    with python_file(tree, EPLB_STATE) as src:
        add_members(
            src,
            "EplbLayerState",
            code=code.members("EplbLayerState"),
            after="logical_replica_count",
        )
        insert_before(
            src,
            "EplbState.__init__",
            anchor=if_block('self.device.type == "cuda"'),
            code=code.body("declare_record_flag"),
        )
        insert_after(
            src,
            "EplbState.add_model",
            anchor=call_statement("model.set_eplb_state"),
            code="self._init_should_record_tensor(model)",
        )
        replace_statement(
            src,
            "EplbState.step",
            anchor=if_block("not is_dummy"),
            code=code.body("fill_window_on_recording_steps"),
            done=if_block("not is_dummy and self._should_record_current_step(log_stats=log_stats)"),
        )
        rearrangement_due = if_block(
            "self.expert_rearrangement_step >= self.expert_rearrangement_step_interval"
        )
        replace_statement(
            src,
            "EplbState.step",
            anchor=rearrangement_due,
            code=code.body("rearrange_or_keep_recording"),
            done=containing(rearrangement_due, call_statement("self._update_layer_should_record")),
        )
        append_to(src, "EplbState.step", code=after_blank_line(PUBLISH_FLAG))
        add_members(src, "EplbState", code=code.members("EplbState"), after="step")
    if tree.exists(ELASTIC_EXECUTE):
        # Scaling re-registers the EPLB views on the model's layers.
        with python_file(tree, ELASTIC_EXECUTE) as src:
            insert_after(
                src,
                ELASTIC_SWITCH,
                anchor=call_statement("model.set_eplb_state"),
                code="eplb_state._init_should_record_tensor(model)",
            )
    bring_file(tree, "tests/distributed/eplb/eplb_single_rank.py")
    bring_file(tree, "tests/distributed/eplb/test_eplb_record_gate.py")
