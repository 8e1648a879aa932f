"""Fragment: the code patch `eplb_clean_window_slots` puts into
vllm/distributed/eplb/eplb_state.py, one holder function per place."""

import torch


def allocate_flag_from_the_rule(self, layer_states):
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


def drop_profile_load(self):
    # A profile run's routing is dummy data, not load.
    for eplb_model_state in self.model_states.values():
        eplb_model_state.expert_load_pass.zero_()
