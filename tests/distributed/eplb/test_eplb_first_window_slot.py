# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Every load window slot holds exactly its own step's load: no forward
before the window and no profile run leaks into the first recorded slot.

vLLM starts the rearrangement counter at step_interval - step_interval // 4,
so the first forward is step_interval // 4 steps before the first
rearrangement: outside the window whenever that is more than window_size.
Expectations are the window's definition (the last window_size recorded
steps' load), not the implementation's bookkeeping.
"""

import pytest
import torch

from tests.distributed.eplb.eplb_single_rank import (
    NUM_PHYSICAL,
    forwards,
    make_state,
    single_rank,
)
from vllm.config.parallel import EPLBConfig


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


@pytest.mark.parametrize("window_size,step_interval", [(10, 100), (500, 3000)])
def test_a_first_forward_outside_the_window_records_nothing(
    monkeypatch, window_size, step_interval
):
    assert step_interval // 4 > window_size
    config = EPLBConfig(window_size=window_size, step_interval=step_interval)
    flags, loads, windows = first_window(monkeypatch, config)
    assert len(flags) == step_interval // 4
    assert not flags[0]
    assert flags[-window_size:] == [True] * window_size
    for index, window_sum in enumerate(windows):
        in_window = sum(load[index] for load in loads[-window_size:])
        assert torch.equal(window_sum[..., :NUM_PHYSICAL], in_window), f"model {index}"


def test_the_defaults_record_the_first_forward_on_purpose(monkeypatch):
    defaults = EPLBConfig()
    assert (defaults.step_interval, defaults.window_size) == (3000, 1000)
    flags, loads, windows = first_window(monkeypatch, defaults)
    assert len(flags) == 750 and all(flags)
    for index, window_sum in enumerate(windows):
        assert torch.equal(
            window_sum[..., :NUM_PHYSICAL], sum(load[index] for load in loads)
        )


def test_profile_run_load_stays_out_of_the_window(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=8, step_interval=8))
    for layer in models[0].moe_layers:
        if bool(state.should_record_tensor):  # the kernel's job during profiling
            layer.eplb_state.expert_load_view.add_(7)
    state.step(is_dummy=True, is_profile=True)
    real_load = torch.full((NUM_PHYSICAL,), 3, dtype=torch.int32)
    for layer in models[0].moe_layers:
        layer.eplb_state.expert_load_view[:NUM_PHYSICAL].add_(real_load)
    state.step()
    first_slot = next(iter(state.model_states.values())).expert_load_window[0]
    assert torch.equal(first_slot, real_load.expand_as(first_slot))
