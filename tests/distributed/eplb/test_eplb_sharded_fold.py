# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EplbState's load shards, driven through the real add_model() and step()
with the single-rank stand-ins of test_eplb_record_gate: each layer counts
into its own rows of the model's shards, and step() folds them into
expert_load_pass before anything reads it."""

import torch
import torch.nn.functional as F

from tests.distributed.eplb.test_eplb_record_gate import (
    NUM_PHYSICAL,
    FakeMoEModel,
    fake_model_config,
    single_rank,
)
from vllm.config.parallel import EPLBConfig, ParallelConfig
from vllm.distributed.eplb.eplb_state import EplbState, expert_load_shard_count


def make_state(window: int = 4, interval: int = 100, log: bool = False):
    config = EPLBConfig(
        window_size=window,
        step_interval=interval,
        log_balancedness=log,
        log_balancedness_interval=1,
    )
    state = EplbState(ParallelConfig(eplb_config=config), torch.device("cpu"))
    model = FakeMoEModel(num_moe_layers=3)
    state.add_model(model, fake_model_config("main"))
    return state, model, next(iter(state.model_states.values()))


def count_forward(model: FakeMoEModel, seed: int) -> torch.Tensor:
    """Plays the router of a recorded forward: random counts into random
    shards of every layer. Returns the load per layer it counted."""
    gen = torch.Generator().manual_seed(seed)
    load = torch.zeros(model.num_moe_layers, NUM_PHYSICAL, dtype=torch.int32)
    for layer, layer_load in zip(model.moe_layers, load):
        shards = layer.eplb_state.expert_load_counter
        for _ in range(20):
            shard = int(torch.randint(0, shards.shape[0], (), generator=gen))
            counts = torch.randint(0, 9, (NUM_PHYSICAL,), generator=gen).int()
            shards[shard] += counts
            layer_load += counts
    return load


def test_each_layer_counts_into_its_own_rows_of_the_shards(monkeypatch):
    single_rank(monkeypatch)
    _, model, model_state = make_state()
    shards = model_state.expert_load_shards
    num_shards = expert_load_shard_count(3, NUM_PHYSICAL)
    assert tuple(shards.shape) == (3, num_shards, NUM_PHYSICAL)
    assert not shards.any()
    for row, layer in enumerate(model.moe_layers):
        layer_shards = layer.eplb_state.expert_load_shards
        assert layer.eplb_state.expert_load_counter is layer_shards
        assert layer_shards.data_ptr() == shards[row].data_ptr()
        assert tuple(layer_shards.shape) == (num_shards, NUM_PHYSICAL)


def test_step_folds_before_the_log_and_the_window_and_clears_the_shards(
    monkeypatch,
):
    single_rank(monkeypatch)
    state, model, model_state = make_state(window=4, interval=3, log=True)
    passes_logged = []
    sync = EplbState._sync_load_pass

    def logged_sync(self):
        passes = sync(self)
        passes_logged.append(passes[0].clone())
        return passes

    monkeypatch.setattr(EplbState, "_sync_load_pass", logged_sync)
    assert bool(state.should_record_tensor)
    slot = state.expert_load_window_step
    load = count_forward(model, seed=1)
    state.step(log_stats=True)
    assert torch.equal(passes_logged[-1], load)
    assert torch.equal(model_state.expert_load_window[slot], load)
    assert not model_state.expert_load_shards.any()
    assert not model_state.expert_load_pass.any()


def test_profile_and_dummy_steps_drop_what_was_counted(monkeypatch):
    single_rank(monkeypatch)
    # A window as long as the interval: every forward records.
    state, model, model_state = make_state(window=100)
    assert bool(state.should_record_tensor)
    count_forward(model, seed=2)
    state.step(is_profile=True)
    assert not model_state.expert_load_shards.any()
    assert not model_state.expert_load_pass.any()
    window = model_state.expert_load_window.clone()
    count_forward(model, seed=3)
    state.step(is_dummy=True)
    assert not model_state.expert_load_shards.any()
    assert not model_state.expert_load_pass.any()
    assert torch.equal(model_state.expert_load_window, window)


def test_steps_outside_the_window_leave_the_shards_alone(monkeypatch):
    """Forwards outside the window read a cleared flag and count nothing, so
    their steps skip the fold."""
    single_rank(monkeypatch)
    state, _, model_state = make_state(window=4, interval=100)
    assert not bool(state.should_record_tensor)
    model_state.expert_load_shards.fill_(1)
    state.step()
    assert model_state.expert_load_shards.all()
    assert not model_state.expert_load_pass.any()


def test_a_resized_pass_gets_shards_of_its_size(monkeypatch):
    """What elastic EP's switch does: fold, pad the pass on the expert dim,
    hand it to the layers again, shard it again."""
    single_rank(monkeypatch)
    state, model, model_state = make_state()
    load = count_forward(model, seed=4)
    state._fold_expert_load(model_state)
    model_state.expert_load_pass = F.pad(model_state.expert_load_pass, (0, 6))
    model.set_eplb_state(
        model_state.expert_load_pass,
        model_state.logical_to_physical_map,
        model_state.logical_replica_count,
    )
    state._init_should_record_tensor(model)
    state._shard_expert_load(model_state)
    num_physical = NUM_PHYSICAL + 6
    assert torch.equal(model_state.expert_load_pass[:, :NUM_PHYSICAL], load)
    shards = model_state.expert_load_shards
    assert tuple(shards.shape)[::2] == (3, num_physical)
    assert not shards.any()
    for row, layer in enumerate(model.moe_layers):
        assert layer.eplb_state.expert_load_shards.data_ptr() == shards[row].data_ptr()
        assert layer.eplb_state.expert_load_shards.shape[-1] == num_physical


def test_a_layer_whose_view_is_not_a_row_of_the_pass_keeps_its_view(monkeypatch):
    single_rank(monkeypatch)
    state, model, model_state = make_state()
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
