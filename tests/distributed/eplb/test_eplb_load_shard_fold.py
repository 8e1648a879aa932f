# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The per-program load shards, through the real `EplbState`: every MoE layer
counts into its rows of its model's shards, `step()` folds them so that the
window holds exactly the recorded steps' load, and what drops the pass
(a profile run, a new mapping) drops the shards' counts with it.

The tests play the router: a forward splits each layer's load over the
layer's shards (as the kernel's programs do) iff the shared flag is set."""

import pytest
import torch
from packaging.version import Version

import vllm
from tests.distributed.eplb.eplb_single_rank import (
    NUM_PHYSICAL,
    make_state,
    model_config,
    single_rank,
)
from vllm.config.parallel import EPLBConfig
from vllm.distributed.eplb.eplb_state import expert_load_shard_count


def count_forward(state, models, generator) -> list[torch.Tensor]:
    """One forward's load per model, split at random over each layer's shards."""
    flag = bool(state.should_record_tensor)
    loads = []
    for model in models:
        load = torch.randint(
            0, 50, (model.num_moe_layers, NUM_PHYSICAL), generator=generator
        )
        for layer, layer_load in zip(model.moe_layers, load):
            shards = layer.eplb_state.expert_load_counter
            assert shards.dim() == 2
            share = torch.randint(
                0, shards.shape[0], (NUM_PHYSICAL,), generator=generator
            )
            first = (layer_load * torch.rand(NUM_PHYSICAL, generator=generator)).long()
            if flag:
                shards[share, torch.arange(NUM_PHYSICAL)] += first.int()
                shards[0] += (layer_load - first).int()
        loads.append(load if flag else torch.zeros_like(load))
    return loads


def test_each_layer_counts_into_its_rows_of_the_model_shards(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=4, step_interval=8))
    for model, model_state in zip(models, state.model_states.values()):
        shards = model_state.expert_load_shards
        count = expert_load_shard_count(model.num_moe_layers, NUM_PHYSICAL)
        assert shards.shape == (model.num_moe_layers, count, NUM_PHYSICAL)
        for index, layer in enumerate(model.moe_layers):
            counter = layer.eplb_state.expert_load_counter
            assert counter.data_ptr() == shards[index].data_ptr()
            assert counter.shape == (count, NUM_PHYSICAL)


@pytest.mark.parametrize(
    "window,interval,log_stats", [(3, 7, False), (2, 5, True), (4, 4, False)]
)
def test_window_holds_the_recorded_load_after_every_step(
    monkeypatch, window, interval, log_stats
):
    single_rank(monkeypatch)
    config = EPLBConfig(
        window_size=window, step_interval=interval, log_balancedness=log_stats,
        log_balancedness_interval=3,
    )  # fmt: skip
    state, models = make_state(config)
    generator = torch.Generator().manual_seed(window * interval)
    recorded: list[list[torch.Tensor]] = []
    for forward in range(4 * interval):
        flag = bool(state.should_record_tensor)
        loads = count_forward(state, models, generator)
        state.step(log_stats=log_stats)
        if flag:
            recorded.append(loads)
        for index, model_state in enumerate(state.model_states.values()):
            in_window = sum(step[index] for step in recorded[-window:])
            actual = model_state.expert_load_window.sum(dim=0).long()
            assert torch.equal(actual, torch.zeros_like(actual) + in_window), forward
            if flag:  # folded: nothing left behind
                assert not model_state.expert_load_shards.any()


def test_a_profile_run_and_a_new_mapping_drop_the_shards_counts(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=8, step_interval=8))
    model_state = next(iter(state.model_states.values()))
    for layer in models[0].moe_layers:
        layer.eplb_state.expert_load_counter.add_(7)  # counted while profiling
    state.step(is_dummy=True, is_profile=True)
    assert not model_state.expert_load_pass.any()
    assert not model_state.expert_load_shards.any()

    for layer in models[0].moe_layers:
        layer.eplb_state.expert_load_counter[1].add_(5)
    if Version(vllm.__version__).release < (0, 30):
        return  # before 0.30 a new mapping keeps the pass, and the shards with it
    mapping = model_state.physical_to_logical_map_buffer.clone()
    state.update_mapping(model_config("main"), mapping)
    assert not model_state.expert_load_pass.any()
    assert not model_state.expert_load_shards.any()
