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
    add_members,
    append_to,
    bring_file,
    call_statement,
    if_block,
    insert_after,
    insert_before,
    python_file,
    replace_statement,
    statement,
)

SUBJECT = "[EPLB] Record expert load only inside the rearrangement window"
ORIGIN = "backport, https://github.com/vllm-project/vllm/pull/36261"
APPLIED_UPSTREAM = "v0.20.0, https://github.com/vllm-project/vllm/pull/36261"
DATE = "2026-03-31T12:01:00+00:00"

EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"
ELASTIC_EXECUTE = "vllm/distributed/elastic_ep/elastic_execute.py"

LAYER_FIELD = '''
should_record_tensor: torch.Tensor | None = None
"""0-dim bool device tensor shared by all layers: record load this step."""
'''

STATE_ATTRIBUTE = '''
self.should_record_tensor: torch.Tensor | None = None
"""
Whether the coming forward pass records expert load: a 0-dim bool device
tensor, allocated once by the first `add_model`. Every MoE layer's
`EplbLayerState` of every model holds this same object, so one `fill_()`
reaches all of them, and kernels read it on the device (CUDA-graph safe).
"""
'''

GATED_WINDOW_UPDATE = """
# Slots are filled only on recording steps, so the window holds exactly
# the steps the next rearrangement (or balancedness log) reads.
if not is_dummy and self._should_record_current_step(log_stats=log_stats):
    for eplb_model_state in self.model_states.values():
        eplb_model_state.expert_load_window[self.expert_load_window_step].copy_(
            eplb_model_state.expert_load_pass
        )
        eplb_model_state.expert_load_pass.zero_()
    self.expert_load_window_step += 1
    if self.expert_load_window_step >= self.expert_load_window_size:
        self.expert_load_window_step = 0
"""

REARRANGE_WITH_FLAG_ON_EARLY_RETURN = """
if self.expert_rearrangement_step >= self.expert_rearrangement_step_interval:
    if self.is_async and any(
        eplb_model_state.rebalanced
        for eplb_model_state in self.model_states.values()
    ):
        # Still rearranging asynchronously: the counter stays past the
        # interval, so the next forward records.
        self._update_layer_should_record(log_stats=log_stats)
        return
    self.expert_rearrangement_step = 0
    self.rearrange()
"""

FLAG_REFILL = """

self._update_layer_should_record(log_stats=log_stats)
"""

GATE_METHODS = '''
def _should_record_current_step(self, log_stats: bool = False) -> bool:
    """Whether the load of the coming forward pass will ever be read.

    The next rearrangement reads the last `window_size` recorded steps, so
    a step further from it than that would be overwritten unread. With
    balancedness logging on, the steps leading to the next log line count.
    """
    window = self.expert_load_window_size
    steps_to_rearrangement = (
        self.expert_rearrangement_step_interval - self.expert_rearrangement_step
    )
    if steps_to_rearrangement <= window:
        return True
    if not log_stats:
        return False
    log_interval = self.parallel_config.eplb_config.log_balancedness_interval
    steps_to_log = -self.expert_rearrangement_step % log_interval
    return steps_to_log <= window

def _update_layer_should_record(self, log_stats: bool = False) -> None:
    """Publish the recording decision for the next forward pass."""
    if self.should_record_tensor is not None:
        self.should_record_tensor.fill_(
            self._should_record_current_step(log_stats=log_stats)
        )

def _init_should_record_tensor(self, model: MixtureOfExperts) -> None:
    """Hand the shared recording flag to every MoE layer of `model`.

    Call after `model.set_eplb_state()`, which fills the layers' states.
    """
    layer_states = [
        layer.eplb_state
        for layer in model.moe_layers
        if isinstance(getattr(layer, "eplb_state", None), EplbLayerState)
    ]
    if self.should_record_tensor is None and layer_states:
        self.should_record_tensor = torch.ones(
            (), dtype=torch.bool, device=self.device
        )
    for layer_state in layer_states:
        layer_state.should_record_tensor = self.should_record_tensor
'''


def apply(tree):
    with python_file(tree, EPLB_STATE) as src:
        add_members(src, "EplbLayerState", LAYER_FIELD, after="logical_replica_count")
        insert_before(
            src, "EplbState.__init__", if_block('self.device.type == "cuda"'), STATE_ATTRIBUTE
        )
        insert_after(
            src, "EplbState.add_model", call_statement("model.set_eplb_state"),
            "self._init_should_record_tensor(model)",
        )  # fmt: skip
        replace_statement(
            src, "EplbState.step", if_block("not is_dummy"), GATED_WINDOW_UPDATE,
            done=statement(GATED_WINDOW_UPDATE),
        )  # fmt: skip
        replace_statement(
            src, "EplbState.step",
            if_block("self.expert_rearrangement_step >= self.expert_rearrangement_step_interval"),
            REARRANGE_WITH_FLAG_ON_EARLY_RETURN,
            done=statement(REARRANGE_WITH_FLAG_ON_EARLY_RETURN),
        )  # fmt: skip
        append_to(src, "EplbState.step", FLAG_REFILL)
        add_members(src, "EplbState", GATE_METHODS, after="step")
    if tree.exists(ELASTIC_EXECUTE):
        # Scaling re-registers the EPLB views on the model's layers.
        with python_file(tree, ELASTIC_EXECUTE) as src:
            insert_after(
                src, "ElasticEPScalingExecutor.switch_and_prepare",
                call_statement("model.set_eplb_state"),
                "eplb_state._init_should_record_tensor(model)",
            )  # fmt: skip
    bring_file(tree, "tests/distributed/eplb/test_eplb_record_gate.py")
