# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Driving the real `EplbState` on one CPU rank, on every release both
lines are for (0.17 to 0.34): a model with just the MixtureOfExperts
surface `add_model` touches, single-rank stand-ins for the EP group, the
collectives and the weight communicator, and a probe in place of
`rearrange()` that keeps the load window each rearrangement would balance
on. The tests play the router: a forward adds its load to each layer's
load view iff the shared flag is set, as the map+record kernel does on the
device. The recording rule, stated in words, is here too
(`rule_says_record`): tests compare the real flag against it."""

import functools
from collections.abc import Iterator
from types import SimpleNamespace

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vllm.distributed.eplb.eplb_state as eplb_state_module
from vllm.config.parallel import EPLBConfig, ParallelConfig
from vllm.distributed.eplb.eplb_state import EplbLayerState, EplbState

NUM_LOGICAL = 6
NUM_REDUNDANT = 2
NUM_PHYSICAL = NUM_LOGICAL + NUM_REDUNDANT


class FakeMoELayer:
    def __init__(self) -> None:
        self.eplb_state = EplbLayerState()


class FakeMoEModel:
    num_expert_groups = 1
    num_logical_experts = NUM_LOGICAL
    num_routed_experts = NUM_LOGICAL
    num_redundant_experts = NUM_REDUNDANT
    num_physical_experts = NUM_PHYSICAL
    num_local_physical_experts = NUM_PHYSICAL
    num_shared_experts = 0

    def __init__(self, num_moe_layers: int) -> None:
        self.num_moe_layers = num_moe_layers
        self.moe_layers = [FakeMoELayer() for _ in range(num_moe_layers)]
        self.expert_weights = [[torch.zeros(NUM_PHYSICAL, 4)] for _ in self.moe_layers]

    def set_eplb_state(self, expert_load_view, logical_to_physical_map, replica_count):
        # What EplbLayerState.set_layer_state does from 0.20 (0.17-0.19 have
        # no such method): each layer's row of the model's tensors.
        for index, layer in enumerate(self.moe_layers):
            layer.eplb_state.expert_load_view = expert_load_view[index]
            layer.eplb_state.logical_to_physical_map = logical_to_physical_map[index]
            layer.eplb_state.logical_replica_count = replica_count[index]


class HostEvent:
    """A device event for CPU tensors: recorded, it is done."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.recorded = False

    def record(self) -> None:
        self.recorded = True

    def query(self) -> bool:
        return self.recorded

    def synchronize(self) -> None:
        pass


def single_rank(monkeypatch) -> list[list[torch.Tensor]]:
    """Returns the list each rearrangement appends its models' window sums to."""
    group = SimpleNamespace(size=lambda: 1, rank=lambda: 0, world_size=1)
    ep_group = SimpleNamespace(device_group=group, world_size=1)
    monkeypatch.setattr(eplb_state_module, "get_ep_group", lambda: ep_group)
    # The EPLB group and the weight communicator arrived in 0.20 (raising=False:
    # set whether or not the release has them).
    monkeypatch.setattr(
        eplb_state_module, "get_eplb_group", lambda: ep_group, raising=False
    )
    monkeypatch.setattr(
        # No buffer of its own (0.34 asks its communicator for one).
        eplb_state_module,
        "create_eplb_communicator",
        lambda **_: SimpleNamespace(owned_expert_buffer=None),
        raising=False,
    )
    # 0.34 logs balancedness once its copy to the host is done, waiting on a
    # device event; on CPU tensors every copy is done when it returns.
    monkeypatch.setattr(eplb_state_module.torch, "Event", HostEvent)
    monkeypatch.setattr(
        EplbState,
        "_sync_load_pass",
        lambda self: [m.expert_load_pass.clone() for m in self.model_states.values()],
    )
    windows_seen: list[list[torch.Tensor]] = []

    def probe_rearrange(self, is_profile: bool = False, **_):
        if not is_profile:
            windows_seen.append(
                [
                    m.expert_load_window.sum(dim=0).long()
                    for m in self.model_states.values()
                ]
            )

    monkeypatch.setattr(EplbState, "rearrange", probe_rearrange)
    return windows_seen


@functools.cache
def model_config(name: str) -> SimpleNamespace:
    """What EplbState asks of a model's config: its name and a key (up to 0.33
    `compute_hash()`, from 0.34 the hash of its `compile_factors()`, cached by
    the config's id: one object per name lives for the session, so a freed
    one's id never maps to another model's key)."""
    return SimpleNamespace(
        model=name,
        compute_hash=lambda: f"hash-{name}",
        compile_factors=lambda: {"model": name},
    )


def make_state(
    eplb_config: EPLBConfig, **parallel_options
) -> tuple[EplbState, list[FakeMoEModel]]:
    """EPLB over a main model and a drafter; `parallel_options` go to
    ParallelConfig (ubatch_size=2: two micro-batches per forward)."""
    if hasattr(eplb_config, "communicator"):
        # ParallelConfig names a weight communicator (0.20 on) only with EPLB
        # enabled on a GPU platform; the one add_model creates is a stand-in.
        eplb_config.communicator = eplb_config.communicator or "torch_gloo"
    parallel_config = ParallelConfig(eplb_config=eplb_config, **parallel_options)
    state = EplbState(parallel_config, torch.device("cpu"))
    models = [FakeMoEModel(num_moe_layers=3), FakeMoEModel(num_moe_layers=2)]
    for name, model in zip(["main", "drafter"], models):
        state.add_model(model, model_config(name))
    return state, models


def forwards(
    state: EplbState, models: list[FakeMoEModel], seed: int
) -> Iterator[tuple[bool, list[torch.Tensor]]]:
    """Endless forwards through the real step(); yields the flag each saw and
    its load per model ((layers, NUM_PHYSICAL) each), after its step()."""
    log_stats = state.parallel_config.eplb_config.log_balancedness
    generator = torch.Generator().manual_seed(seed)
    while True:
        flag = bool(state.should_record_tensor)
        loads = [
            torch.randint(0, 50, (m.num_moe_layers, NUM_PHYSICAL), generator=generator)
            for m in models
        ]
        for model, load in zip(models, loads):
            for layer, layer_load in zip(model.moe_layers, load):
                if flag:
                    layer.eplb_state.expert_load_view[:NUM_PHYSICAL].add_(
                        layer_load.int()
                    )
        state.step(log_stats=log_stats)
        yield flag, loads


def first_window(monkeypatch, config: EPLBConfig):
    """The forwards up to the first rearrangement: the flag each saw, its
    load per model, and the window each model's rearrangement balanced on."""
    windows_seen = single_rank(monkeypatch)
    state, models = make_state(config)
    flags, loads = [], []
    for flag, step_loads in forwards(state, models, seed=config.step_interval):
        flags.append(flag)
        loads.append(step_loads)
        if windows_seen:
            break
    return flags, loads, windows_seen[0]


def first_counter(interval: int) -> int:
    """The rearrangement counter starts three quarters into the interval."""
    return max(0, interval - interval // 4)


def rule_says_record(
    step: int, interval: int, window: int, log_interval: int | None
) -> bool:
    """Record when the next rearrangement, or the next balancedness log line,
    is at most `window` steps away."""
    if interval - step <= window:
        return True
    if log_interval is None:
        return False
    steps_to_log = (log_interval - step % log_interval) % log_interval
    return steps_to_log <= window


def gate_config(window: int, interval: int, log_interval: int | None) -> EPLBConfig:
    """log_interval None: no balancedness logging."""
    return EPLBConfig(
        window_size=window,
        step_interval=interval,
        log_balancedness=log_interval is not None,
        log_balancedness_interval=log_interval or 1,
    )


def random_gate_settings(test):
    """Runs `test(window, interval, log_interval, seed, monkeypatch)` on 60
    random settings of the gate. Each example installs the stand-ins again;
    monkeypatch undoes them at the end."""
    return settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )(
        given(
            window=st.integers(1, 12),
            interval=st.integers(1, 20),
            log_interval=st.none() | st.integers(1, 6),
            seed=st.integers(0, 2**16),
        )(test)
    )
