# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EplbState's real-token counts: one list of 0-dim device tensors per
model (one tensor per micro-batch), shared by all of that model's layers,
filled by prepare_forward before a forward. A model nobody prepares keeps
the count that records every row."""

import pytest
import torch

from tests.distributed.eplb.eplb_single_rank import (
    make_state,
    model_config,
    single_rank,
)
from vllm.config.parallel import EPLBConfig
from vllm.distributed.eplb import eplb_state
from vllm.v1.worker.ubatch_utils import UBatchSlice


def counts_of(model) -> list[torch.Tensor]:
    lists = {
        id(layer.eplb_state.num_unpadded_tokens_tensors) for layer in model.moe_layers
    }
    assert len(lists) == 1, "every layer of a model holds the same counts"
    return model.moe_layers[0].eplb_state.num_unpadded_tokens_tensors


def values(model) -> list[int]:
    return [int(count) for count in counts_of(model)]


@pytest.fixture
def state_and_models(monkeypatch):
    single_rank(monkeypatch)
    return make_state(EPLBConfig(window_size=10, step_interval=100))


def test_each_model_gets_its_own_counts_starting_at_every_row(state_and_models):
    state, (main, drafter) = state_and_models
    assert counts_of(main) is not counts_of(drafter)
    assert values(main) == values(drafter) == [eplb_state.ALL_ROWS_ARE_REAL]
    # The count the router's kernel test checks as "every row".
    assert torch.iinfo(torch.int32).max == eplb_state.ALL_ROWS_ARE_REAL
    assert counts_of(main)[0].dtype == torch.int32
    assert counts_of(main)[0].dim() == 0


def test_prepare_forward_fills_only_the_named_model(state_and_models):
    state, (main, drafter) = state_and_models
    state.prepare_forward(model_config("main"), 37)
    assert values(main) == [37]
    assert values(drafter) == [eplb_state.ALL_ROWS_ARE_REAL]
    state.prepare_forward(model_config("drafter"), 5)
    assert (values(main), values(drafter)) == ([37], [5])


def test_a_model_eplb_does_not_balance_is_left_alone(state_and_models):
    state, (main, drafter) = state_and_models
    state.prepare_forward(model_config("not-added"), 3)
    assert values(main) == values(drafter) == [eplb_state.ALL_ROWS_ARE_REAL]


@pytest.mark.parametrize("real", [0, 5, 8, 13, 16])
def test_each_micro_batch_gets_its_share(monkeypatch, real):
    single_rank(monkeypatch)
    config = EPLBConfig(window_size=10, step_interval=100)
    state, (main, drafter) = make_state(config, ubatch_size=2)
    assert len(counts_of(main)) == len(counts_of(drafter)) == 2
    # Two micro-batches of 8 padded rows each.
    slices = [
        UBatchSlice(request_slice=slice(0, 1), token_slice=slice(0, 8)),
        UBatchSlice(request_slice=slice(1, 2), token_slice=slice(8, 16)),
    ]
    state.prepare_forward(model_config("main"), real, slices)
    assert values(main) == [min(real, 8), max(0, real - 8)]
    assert sum(values(main)) == real


def test_the_counts_survive_a_new_handout(state_and_models):
    """Elastic EP hands the layers their tensors again after a resize: the
    counts stay the model's own objects."""
    state, (main, _) = state_and_models
    before = state.model_states[
        model_config("main").compute_hash()
    ].num_unpadded_tokens_tensors
    state._propagate_shared_tensors(main, before)
    assert counts_of(main) is before
    state.prepare_forward(model_config("main"), 9)
    assert values(main) == [9]
    assert (
        main.moe_layers[0].eplb_state.should_record_tensor is state.should_record_tensor
    )
