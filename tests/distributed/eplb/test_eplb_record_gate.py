# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The EPLB recording gate, driven through the real `EplbState.step()`.

The engine's collectives are replaced by single-rank stand-ins and
`rearrange()` by a probe that snapshots the load window it would balance on;
everything else (add_model, the flag, the window bookkeeping) is the real
code. The router's recording is played by the test: each forward adds that
step's synthetic load to every layer's load view iff the shared flag is set,
which is what the map+record kernel does on the device.

Expectations come from first principles, not from the implementation: the
rearrangement counter's arithmetic, the recording rule stated in words, and
"the window holds the last `window_size` steps' load".
"""

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
    """Just the MixtureOfExperts surface EplbState.add_model touches."""

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
        self.expert_weights: list[list[torch.Tensor]] = []

    def set_eplb_state(
        self, expert_load_view, logical_to_physical_map, logical_replica_count
    ):
        for index, layer in enumerate(self.moe_layers):
            self.expert_weights.append([torch.zeros(NUM_PHYSICAL, 4)])
            layer.eplb_state.expert_load_view = expert_load_view[index]
            layer.eplb_state.logical_to_physical_map = logical_to_physical_map[index]
            layer.eplb_state.logical_replica_count = logical_replica_count[index]


def fake_model_config(name: str):
    return SimpleNamespace(model=name, compute_hash=lambda: f"hash-{name}")


def single_rank(monkeypatch) -> list[list[torch.Tensor]]:
    """Stand-ins for the EP group and the collectives; a probe for rearrange().
    Returns the list each rearrangement appends its models' window sums to."""
    group = SimpleNamespace(size=lambda: 1, rank=lambda: 0)
    monkeypatch.setattr(
        eplb_state_module, "get_ep_group", lambda: SimpleNamespace(device_group=group)
    )
    monkeypatch.setattr(
        EplbState,
        "_sync_load_pass",
        lambda self: [m.expert_load_pass.clone() for m in self.model_states.values()],
    )
    windows_seen: list[list[torch.Tensor]] = []

    def probe_rearrange(self, is_profile: bool = False, **_):
        if is_profile:
            return
        windows_seen.append(
            [m.expert_load_window.sum(dim=0).long() for m in self.model_states.values()]
        )

    monkeypatch.setattr(EplbState, "rearrange", probe_rearrange)
    return windows_seen


def make_state(eplb_config: EPLBConfig) -> tuple[EplbState, list[FakeMoEModel]]:
    state = EplbState(ParallelConfig(eplb_config=eplb_config), torch.device("cpu"))
    models = [FakeMoEModel(num_moe_layers=3), FakeMoEModel(num_moe_layers=2)]
    for name, model in zip(["main", "drafter"], models):
        state.add_model(model, fake_model_config(name))
    return state, models


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


def forwards(state: EplbState, models: list[FakeMoEModel], seed: int):
    """Endless forward passes through the real step(). Each plays the router:
    it adds a random load to every layer's load view iff the shared flag is
    set (the map+record kernel's job). Yields the flag each forward saw and
    its load per model, after its step()."""
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
                    layer.eplb_state.expert_load_view.add_(layer_load.int())
        state.step(log_stats=log_stats)
        yield flag, loads


def first_counter(interval: int) -> int:
    """vLLM starts the rearrangement counter three quarters into the interval."""
    return max(0, interval - interval // 4)


def test_one_flag_object_shared_by_every_layer_of_every_model(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=4, step_interval=10))
    flag = state.should_record_tensor
    assert isinstance(flag, torch.Tensor)
    assert flag.dim() == 0 and flag.dtype == torch.bool
    layer_flags = [
        layer.eplb_state.should_record_tensor for m in models for layer in m.moe_layers
    ]
    assert len(layer_flags) == 5
    assert all(f is flag for f in layer_flags)
    state.step(log_stats=False)
    assert state.should_record_tensor is flag  # refilled in place, never replaced


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


@random_gate_settings
def test_flag_and_window_follow_the_rule(
    window, interval, log_interval, seed, monkeypatch
):
    windows_seen = single_rank(monkeypatch)
    state, models = make_state(gate_config(window, interval, log_interval))
    step = first_counter(interval)
    # Where the load of a first forward outside the window goes is not
    # settled here: the first recorded slot must hold its own step's load
    # and may hold more, until a later recorded step overwrites it.
    first_slot_settled = rule_says_record(step, interval, window, log_interval)
    loads: list[list[torch.Tensor]] = []  # per forward, per model
    # The window as a ring of the last `window` recorded steps' loads.
    expected_window = [
        torch.zeros(window, m.num_moe_layers, NUM_PHYSICAL, dtype=torch.long)
        for m in models
    ]
    recorded = rearrangements = 0
    for forward, (flag, step_loads) in enumerate(forwards(state, models, seed)):
        records = rule_says_record(step, interval, window, log_interval)
        if forward > 0 or records:
            assert flag == records, f"forward {forward}, counter {step}"
        loads.append(step_loads)
        if records:
            for index, load in enumerate(step_loads):
                expected_window[index][recorded % window] = load
            recorded += 1
            first_slot_settled |= recorded > window
        for index, model_state in enumerate(state.model_states.values()):
            actual = model_state.expert_load_window.long()
            expected = expected_window[index]
            settled = slice(0 if first_slot_settled else 1, None)
            assert torch.equal(actual[settled], expected[settled]), (
                f"window slots after forward {forward}, model {index}"
            )
            assert (actual[0] >= expected[0]).all()
        step += 1
        if step >= interval:
            step = 0
            rearrangements += 1
            assert len(windows_seen) == rearrangements
            for index, model_state in enumerate(state.model_states.values()):
                window_sum = model_state.expert_load_window.sum(dim=0).long()
                assert torch.equal(windows_seen[-1][index], window_sum)
                if first_slot_settled:
                    # Every slot is its own step's: the window is exactly
                    # the load of the last `window` forwards.
                    last = range(max(0, forward + 1 - window), forward + 1)
                    assert torch.equal(window_sum, sum(loads[f][index] for f in last))
            if rearrangements == 3:
                break


def test_dummy_steps_record_nothing(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=8, step_interval=8))
    for layer in models[0].moe_layers:
        layer.eplb_state.expert_load_view.fill_(5)
    state.step(is_dummy=True)
    assert all(
        int(m.expert_load_pass.abs().sum()) == 0 for m in state.model_states.values()
    )
    assert all(
        int(m.expert_load_window.abs().sum()) == 0 for m in state.model_states.values()
    )
