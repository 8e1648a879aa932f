# SPDX-License-Identifier: Apache-2.0
"""The stand-ins: a MoE model of the demo's sizes, a one-process EP group, and
an `EplbState` whose rearrangement installs the policy's placement instead of
moving weights. Everything else is the installed fork's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import vllm.distributed.parallel_state as parallel_state
from vllm.config.parallel import ParallelConfig
from vllm.distributed.eplb.eplb_state import EplbLayerState, EplbModelState, EplbState
from vllm.model_executor.layers.fused_moe.layer import FusedMoE
from vllm.model_executor.models.interfaces import MixtureOfExperts

NUM_LAYERS = 4
NUM_LOGICAL = 16
NUM_REDUNDANT = 4
NUM_PHYSICAL = NUM_LOGICAL + NUM_REDUNDANT
NUM_GPUS = 4
SLOTS_PER_GPU = NUM_PHYSICAL // NUM_GPUS
TOP_K = 4


class DemoMoELayer:
    """What EPLB touches of a `FusedMoE` layer: its `EplbLayerState`, which
    FusedMoE's own `set_eplb_state` points at its row of the state's maps,
    and its expert weights."""

    set_eplb_state = FusedMoE.set_eplb_state

    def __init__(self) -> None:
        self.eplb_state = EplbLayerState()

    def get_expert_weights(self) -> list[torch.Tensor]:
        # add_model sizes its transfer buffer from these; no weights move here.
        return [torch.zeros(NUM_PHYSICAL, 1)]


class DemoMoEModel(MixtureOfExperts):
    """vLLM's `MixtureOfExperts` at the demo's sizes. Its `set_eplb_state` is
    the protocol's: the layers hold views of the state's maps, so updates to
    them reach the router without another call."""

    num_moe_layers = NUM_LAYERS
    num_expert_groups = 1
    num_logical_experts = num_routed_experts = NUM_LOGICAL
    num_redundant_experts = NUM_REDUNDANT
    # One process holds every simulated GPU's experts.
    num_physical_experts = num_local_physical_experts = NUM_PHYSICAL
    num_shared_experts = 0

    def __init__(self) -> None:
        self.moe_layers = [DemoMoELayer() for _ in range(NUM_LAYERS)]
        self.expert_weights = []


@contextlib.contextmanager
def single_process_ep_group() -> Iterator[None]:
    """vLLM's EP group, as one rank of size one, for the duration of the demo.

    `EplbState.step()` looks the group up through `get_ep_group()`; with
    balancedness logging off and `rearrange()` overridden it needs nothing but
    its size and rank. A CPU demo has no torch.distributed to build a real
    group from, so the global that `initialize_model_parallel` would set is set
    here explicitly, and restored on the way out.
    """
    group = SimpleNamespace(size=lambda: 1, rank=lambda: 0)
    previous = parallel_state._EP
    parallel_state._EP = SimpleNamespace(device_group=group)
    try:
        yield
    finally:
        parallel_state._EP = previous


@dataclass
class Rearrangement:
    step: int  # the forward after which step() rearranged
    window: torch.Tensor  # (window_size, layers, physical): what vLLM recorded
    logical_load: torch.Tensor  # (layers, logical): what the policy balanced
    new_placement: torch.Tensor  # (layers, physical) -> logical
    per_gpu_before: torch.Tensor = field(init=False)  # (layers, gpus)
    per_gpu_after: torch.Tensor = field(init=False)


class PolicyOnlyEplbState(EplbState):
    """`EplbState` whose `rearrange()` runs the configured policy and installs
    its placement, without the weight transfer (which needs the EP process
    group and the experts' weights)."""

    def __init__(self, parallel_config: ParallelConfig) -> None:
        super().__init__(parallel_config, torch.device("cpu"))
        self.rearrangements: list[Rearrangement] = []
        self.current_step = -1  # set by the driver before each step()

    def rearrange(
        self, is_profile: bool = False, rank_mapping: dict[int, int] | None = None
    ) -> None:
        if is_profile:
            return None
        for model_state in self.model_states.values():
            window = model_state.expert_load_window.clone()
            placement = model_state.physical_to_logical_map
            # Each physical expert's window load, credited to the logical
            # expert it holds now, as vLLM's rearrange() does.
            logical_load = torch.zeros(NUM_LAYERS, NUM_LOGICAL, dtype=torch.long)
            logical_load.scatter_add_(1, placement.long(), window.sum(dim=0).long())
            new_placement = self.policy.rebalance_experts(
                logical_load,
                num_replicas=NUM_PHYSICAL,
                num_groups=model_state.model.num_expert_groups,
                num_nodes=1,
                num_ranks=NUM_GPUS,
                old_global_expert_indices=placement.clone(),
            )
            self.rearrangements.append(
                Rearrangement(
                    step=self.current_step,
                    window=window,
                    logical_load=logical_load,
                    new_placement=new_placement.clone(),
                )
            )
            install_placement(model_state, new_placement)
        return None


def install_placement(model_state: EplbModelState, physical_to_logical: torch.Tensor) -> None:
    """Make `physical_to_logical` (layers, physical) the state's placement.

    In place, as vLLM commits its maps after a rearrangement: every MoE layer
    holds views of these tensors. A logical expert's replicas are listed in
    ascending physical order, the order vLLM derives them in.
    """
    logical_to_physical = torch.full_like(model_state.logical_to_physical_map, -1)
    replica_count = torch.zeros_like(model_state.logical_replica_count)
    for layer, row in enumerate(physical_to_logical.tolist()):
        for physical, logical in enumerate(row):
            logical_to_physical[layer, logical, replica_count[layer, logical]] = physical
            replica_count[layer, logical] += 1
    model_state.physical_to_logical_map.copy_(physical_to_logical)
    model_state.logical_to_physical_map.copy_(logical_to_physical)
    model_state.logical_replica_count.copy_(replica_count)
