# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Every load window slot holds exactly its own step's load: no forward
before the window and no profile run leaks into the first recorded slot.

vLLM starts the rearrangement counter at step_interval - step_interval // 4,
so the first forward is step_interval // 4 steps before the first
rearrangement: outside the window whenever that is more than window_size.
Driven through the real `EplbState.step()` with the stand-ins of
eplb_single_rank.py, on both lines' releases. Expectations are the window's
definition (the last window_size recorded steps' load), not the
implementation's bookkeeping.
"""

import pytest
import torch

from tests.distributed.eplb.eplb_single_rank import (
    NUM_PHYSICAL,
    first_counter,
    first_window,
    forwards,
    gate_config,
    make_state,
    random_gate_settings,
    rule_says_record,
    single_rank,
)
from vllm.config.parallel import EPLBConfig


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


@random_gate_settings
def test_window_is_the_last_recorded_steps_after_every_step(
    window, interval, log_interval, seed, monkeypatch
):
    """The flag follows the rule from the first forward on, and after every
    step each model's window is the load of its last `window` recorded
    forwards, nothing else."""
    single_rank(monkeypatch)
    state, models = make_state(gate_config(window, interval, log_interval))
    step = first_counter(interval)
    recorded: list[list[torch.Tensor]] = []
    for forward, (flag, loads) in enumerate(forwards(state, models, seed)):
        assert flag == rule_says_record(step, interval, window, log_interval)
        if flag:
            recorded.append(loads)
        for index, model_state in enumerate(state.model_states.values()):
            in_window = sum(load[index] for load in recorded[-window:])
            actual = model_state.expert_load_window.sum(dim=0).long()
            assert torch.equal(actual, torch.zeros_like(actual) + in_window), (
                f"forward {forward}, model {index}"
            )
        step = step + 1 if step + 1 < interval else 0
        if forward == 3 * interval:
            break
