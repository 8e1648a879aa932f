# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""MoERunner gives its router this rank's block of a batch that naive
dispatch gathered across the DP group before routing, and no window where
the router sees local rows (a modular kernel, one DP rank) or where the
gather is not the DP group's (sequence parallelism, prefill context
parallelism). MoERunner's own `_maybe_dispatch` and `_eplb_own_rows` run on
stand-ins for its state, the DP group, the gather and the forward context;
what the router then counts is tests/kernels/moe/test_eplb_own_rows.py."""

from types import SimpleNamespace

import pytest
import torch

import vllm.model_executor.layers.fused_moe.runner.moe_runner as moe_runner

BLOCK = 8  # rows per DP rank in the gather
DP_SIZE = 3


class Runner:
    """MoERunner's own dispatch code on stand-in state."""

    do_naive_dispatch_combine = moe_runner.MoERunner.do_naive_dispatch_combine
    _quant_method = moe_runner.MoERunner._quant_method
    _maybe_dispatch = moe_runner.MoERunner._maybe_dispatch
    _eplb_own_rows = moe_runner.MoERunner._eplb_own_rows

    def __init__(self, dp_size, sequence_parallel=False, pcp_size=1, modular=False):
        self.moe_config = SimpleNamespace(
            dp_size=dp_size,
            is_sequence_parallel=sequence_parallel,
            pcp_size=pcp_size,
            moe_parallel_config=SimpleNamespace(use_all2all_kernels=False),
        )
        quant_method = SimpleNamespace(supports_internal_mk=modular)
        self.routed_experts = SimpleNamespace(quant_method=quant_method)
        self.router = SimpleNamespace(eplb_counted_rows="unset")


@pytest.fixture
def dp_rank_1_of_3(monkeypatch):
    """DP rank 1 of 3 whose gather concatenates blocks of BLOCK rows."""
    sizes = [BLOCK] * DP_SIZE
    metadata = SimpleNamespace(get_chunk_sizes_across_dp_rank=lambda: sizes)
    context = SimpleNamespace(dp_metadata=metadata)
    monkeypatch.setattr(moe_runner, "get_forward_context", lambda: context)
    monkeypatch.setattr(
        moe_runner, "get_dp_group", lambda: SimpleNamespace(rank_in_group=1)
    )

    def gather(hidden_states, router_logits, is_sequence_parallel):
        return hidden_states.repeat(len(sizes), 1), router_logits.repeat(len(sizes), 1)

    group = SimpleNamespace(dispatch_router_logits=gather)
    monkeypatch.setattr(moe_runner, "get_ep_group", lambda: group)
    monkeypatch.setattr(moe_runner, "get_pcp_group", lambda: None)


@pytest.mark.parametrize(
    "runner,rows",
    [
        (Runner(dp_size=DP_SIZE), (BLOCK, 2 * BLOCK)),
        (Runner(dp_size=DP_SIZE, modular=True), None),  # routed on local rows
        (Runner(dp_size=DP_SIZE, sequence_parallel=True), None),
        (Runner(dp_size=DP_SIZE, pcp_size=2), None),
    ],
    ids=["naive_dp", "modular_kernel", "sequence_parallel", "pcp"],
)
def test_the_runner_gives_its_router_this_ranks_block(dp_rank_1_of_3, runner, rows):
    hidden, logits = torch.zeros(BLOCK, 4), torch.zeros(BLOCK, 10)
    if runner.moe_config.pcp_size > 1:
        assert runner._eplb_own_rows() is None
        return
    # Hidden states first (0.34 adds their quantization scale after the logits).
    gathered = runner._maybe_dispatch(hidden, logits)[0]
    assert runner.router.eplb_counted_rows == rows
    if rows is not None:
        assert gathered.shape[0] == BLOCK * DP_SIZE


def test_a_single_dp_rank_counts_every_row(dp_rank_1_of_3):
    assert Runner(dp_size=1)._eplb_own_rows() is None
