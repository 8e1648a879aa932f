"""Fragment: the record gate of EplbState, as PR #36261 has it.

The patch `eplb_state_record_gate` puts this code into
vllm/distributed/eplb/eplb_state.py, each piece where the patch says. The
imports are those eplb_state.py has.
"""

import torch

from vllm.model_executor.models.interfaces import MixtureOfExperts


class EplbLayerState:

    should_record_tensor: torch.Tensor | None = None
    """0-dim bool device tensor shared by all layers: record load this step."""


def declare_record_flag(self) -> None:
    self.should_record_tensor: torch.Tensor | None = None
    """
    Whether the coming forward pass records expert load: a 0-dim bool device
    tensor, allocated once by the first `add_model`. Every MoE layer's
    `EplbLayerState` of every model holds this same object, so one `fill_()`
    reaches all of them, and kernels read it on the device (CUDA-graph safe).
    """


def fill_window_on_recording_steps(self, is_dummy: bool, log_stats: bool) -> None:
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


def rearrange_or_keep_recording(self, log_stats: bool) -> None:
    """The asynchronous early return publishes the flag too."""
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


class EplbState:

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
