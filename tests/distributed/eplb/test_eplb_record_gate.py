# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The EPLB recording gate, driven through the real `EplbState.step()`.

The engine's collectives are replaced by single-rank stand-ins and
`rearrange()` by a probe that snapshots the load window it would balance on
(eplb_single_rank.py);
everything else (add_model, the flag, the window bookkeeping) is the real
code. The router's recording is played by the test: each forward adds that
step's synthetic load to every layer's load view iff the shared flag is set,
which is what the map+record kernel does on the device.

Expectations come from first principles, not from the implementation: the
rearrangement counter's arithmetic, the recording rule stated in words, and
"the window holds the last `window_size` steps' load".
"""

import torch

from tests.distributed.eplb.eplb_single_rank import (
    NUM_PHYSICAL,
    first_counter,
    forwards,
    gate_config,
    make_state,
    random_gate_settings,
    rule_says_record,
    single_rank,
)
from vllm.config.parallel import EPLBConfig


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
