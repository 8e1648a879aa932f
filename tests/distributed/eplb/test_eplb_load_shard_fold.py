# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The per-program load shards, through the real `EplbState` (the stand-ins
of eplb_single_rank.py; both lines): every MoE layer counts into its rows
of its model's shards, `step()` folds them first, so that the balancedness
log and the window see exactly the recorded steps' load, and what drops
the pass (a profile or dummy run, a new mapping) drops the shards' counts
with it.

The tests play the router: a forward splits each layer's load over the
layer's shards (as the kernel's programs do) iff the shared flag is set."""

import pytest
import torch
import torch.nn.functional as F
from packaging.version import Version

import vllm
from tests.distributed.eplb.eplb_single_rank import (
    NUM_PHYSICAL,
    make_state,
    model_config,
    single_rank,
)
from vllm.config.parallel import EPLBConfig
from vllm.distributed.eplb.eplb_state import EplbState, expert_load_shard_count


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


def main_state(state):
    return next(iter(state.model_states.values()))


def hand_out_again(state, model, model_state) -> None:
    """What elastic EP does after resizing the pass: the layers get the
    model's shared tensors again (from 0.25, with its real-token counts)."""
    if hasattr(state, "_propagate_shared_tensors"):
        counts = model_state.num_unpadded_tokens_tensors
        state._propagate_shared_tensors(model, counts)
    else:
        state._init_should_record_tensor(model)


def test_each_layer_counts_into_its_rows_of_the_model_shards(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=4, step_interval=8))
    for model, model_state in zip(models, state.model_states.values()):
        shards = model_state.expert_load_shards
        count = expert_load_shard_count(model.num_moe_layers, NUM_PHYSICAL)
        assert shards.shape == (model.num_moe_layers, count, NUM_PHYSICAL)
        assert not shards.any()
        for index, layer in enumerate(model.moe_layers):
            counter = layer.eplb_state.expert_load_counter
            assert counter is layer.eplb_state.expert_load_shards
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


def test_the_balancedness_log_reads_the_folded_pass(monkeypatch):
    single_rank(monkeypatch)
    config = EPLBConfig(
        window_size=4, step_interval=3, log_balancedness=True,
        log_balancedness_interval=1,
    )  # fmt: skip
    state, models = make_state(config)
    passes_logged = []
    sync = EplbState._sync_load_pass  # single_rank's stand-in

    def logged_sync(self):
        passes = sync(self)
        passes_logged.append([p.clone() for p in passes])
        return passes

    monkeypatch.setattr(EplbState, "_sync_load_pass", logged_sync)
    assert bool(state.should_record_tensor)
    loads = count_forward(state, models, torch.Generator().manual_seed(1))
    state.step(log_stats=True)
    assert len(passes_logged) == 1
    for logged, load in zip(passes_logged[0], loads):
        assert torch.equal(logged[..., :NUM_PHYSICAL].long(), load)


def test_a_profile_run_a_dummy_step_and_a_new_mapping_drop_the_counts(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=8, step_interval=8))
    model_state = main_state(state)
    for layer in models[0].moe_layers:
        layer.eplb_state.expert_load_counter.add_(7)  # counted while profiling
    state.step(is_dummy=True, is_profile=True)
    assert not model_state.expert_load_pass.any()
    assert not model_state.expert_load_shards.any()

    window = model_state.expert_load_window.clone()
    for layer in models[0].moe_layers:
        layer.eplb_state.expert_load_counter[1].add_(3)  # an idle DP rank's step
    state.step(is_dummy=True)
    assert not model_state.expert_load_pass.any()
    assert not model_state.expert_load_shards.any()
    assert torch.equal(model_state.expert_load_window, window)

    for layer in models[0].moe_layers:
        layer.eplb_state.expert_load_counter[1].add_(5)
    if Version(vllm.__version__).release < (0, 30):
        return  # before 0.30 a new mapping keeps the pass, and the shards with it
    mapping = model_state.physical_to_logical_map_buffer.clone()
    state.update_mapping(model_config("main"), mapping)
    assert not model_state.expert_load_pass.any()
    assert not model_state.expert_load_shards.any()


def test_steps_outside_the_window_leave_the_shards_alone(monkeypatch):
    """Forwards outside the window read a cleared flag and count nothing, so
    their steps skip the fold."""
    single_rank(monkeypatch)
    state, _ = make_state(EPLBConfig(window_size=4, step_interval=100))
    model_state = main_state(state)
    assert not bool(state.should_record_tensor)
    model_state.expert_load_shards.fill_(1)
    state.step()
    assert model_state.expert_load_shards.all()
    assert not model_state.expert_load_pass.any()


def test_a_resized_pass_gets_shards_of_its_size(monkeypatch):
    """What elastic EP's resize does: fold, pad the pass on the expert dim,
    hand it to the layers again, shard it again."""
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=100, step_interval=100))
    model, model_state = models[0], main_state(state)
    load = count_forward(state, models, torch.Generator().manual_seed(4))[0]
    state._fold_expert_load(model_state)
    model_state.expert_load_pass = F.pad(model_state.expert_load_pass, (0, 6))
    model.set_eplb_state(
        model_state.expert_load_pass,
        model_state.logical_to_physical_map,
        model_state.logical_replica_count,
    )
    hand_out_again(state, model, model_state)
    state._shard_expert_load(model_state)
    num_physical = NUM_PHYSICAL + 6
    assert torch.equal(model_state.expert_load_pass[:, :NUM_PHYSICAL].long(), load)
    shards = model_state.expert_load_shards
    assert tuple(shards.shape)[::2] == (3, num_physical)
    assert not shards.any()
    for row, layer in enumerate(model.moe_layers):
        assert layer.eplb_state.expert_load_shards.data_ptr() == shards[row].data_ptr()
        assert layer.eplb_state.expert_load_shards.shape[-1] == num_physical


def test_a_layer_whose_view_is_not_a_row_of_the_pass_keeps_its_view(monkeypatch):
    single_rank(monkeypatch)
    state, models = make_state(EPLBConfig(window_size=4, step_interval=100))
    model, model_state = models[0], main_state(state)
    elsewhere = torch.zeros(NUM_PHYSICAL, dtype=torch.int32)
    model.moe_layers[1].eplb_state.expert_load_view = elsewhere
    state._shard_expert_load(model_state)
    assert model.moe_layers[1].eplb_state.expert_load_counter is elsewhere
    assert model.moe_layers[0].eplb_state.expert_load_shards is not None


def test_shard_count_fits_the_memory_bound():
    assert expert_load_shard_count(61, 288) == 64
    assert expert_load_shard_count(61, 4600) == 4
    assert expert_load_shard_count(2, 8) == 64
    assert expert_load_shard_count(1000, 100_000) == 1
    assert expert_load_shard_count(0, 0) >= 1
    for layers, experts in [(61, 288), (61, 4600), (94, 512), (48, 1024)]:
        shards = expert_load_shard_count(layers, experts)
        assert shards == 1 or shards * layers * experts * 4 <= 8 << 20
        assert shards & (shards - 1) == 0
