# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EPLB load under a DP gather before routing: each EP rank counts only its
own block of the gathered batch, and within it only its real tokens.

The kernel part runs the router's map+record on a gathered batch of three
DP ranks (blocks of 8 rows, 5, 7 and 3 real tokens) as each rank would; the
runner part runs MoERunner's own `_maybe_dispatch` and `_eplb_own_rows` on
stand-ins for its state, the DP group and the forward context. Runs on a
GPU, or on CPU tensors under TRITON_INTERPRET=1."""

from types import SimpleNamespace

import pytest
import torch

import vllm.model_executor.layers.fused_moe.runner.moe_runner as moe_runner
from tests.kernels.moe.test_eplb_relaxed_record import (
    DEVICES,
    cuda_alike_entry_point,
    expected,
    uneven_map,
)

BLOCK = 8  # rows per DP rank in the gather (its padded batch)
REAL = [5, 7, 3]  # real tokens per DP rank


@pytest.fixture
def map_and_record(monkeypatch):
    yield from cuda_alike_entry_point(monkeypatch)


def gathered_batch(device: str):
    gen = torch.Generator().manual_seed(3)
    l2p, replicas, num_physical = uneven_map(10, gen, device)
    ids = torch.randint(0, 10, (BLOCK * len(REAL), 3), generator=gen, dtype=torch.int32)
    return ids, l2p, replicas, num_physical


def count(map_and_record, ids, l2p, replicas, num_physical, real, rows, shards=None):
    device = l2p.device
    shape = (num_physical,) if shards is None else (shards, num_physical)
    load = torch.zeros(shape, dtype=torch.int32, device=device)
    out = map_and_record(
        ids.to(device),
        load,
        l2p,
        replicas,
        torch.tensor(True, device=device),
        torch.tensor(real, dtype=torch.int32, device=device),
        counted_rows=rows,
    )
    assert torch.equal(out.cpu().long(), expected(ids, l2p, replicas))
    return load.cpu().long() if shards is None else load.cpu().long().sum(0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shards", [None, 4])
def test_each_rank_counts_its_own_real_tokens(map_and_record, device, shards):
    ids, l2p, replicas, num_physical = gathered_batch(device)
    want = expected(ids, l2p, replicas)
    total = torch.zeros(num_physical, dtype=torch.long)
    for rank, real in enumerate(REAL):
        first = rank * BLOCK
        rows = (first, first + BLOCK)
        got = count(
            map_and_record, ids, l2p, replicas, num_physical, real, rows, shards
        )
        own = want[first : first + real].flatten()
        assert torch.equal(got, torch.bincount(own, minlength=num_physical)), rank
        total += got
    # Together the ranks count every real token once, no padding row.
    real_rows = torch.cat([want[r * BLOCK : r * BLOCK + n] for r, n in enumerate(REAL)])
    assert torch.equal(
        total, torch.bincount(real_rows.flatten(), minlength=num_physical)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_without_a_window_every_row_up_to_the_real_count_counts(map_and_record, device):
    ids, l2p, replicas, num_physical = gathered_batch(device)
    want = expected(ids, l2p, replicas)
    got = count(map_and_record, ids, l2p, replicas, num_physical, REAL[1], None)
    assert torch.equal(
        got, torch.bincount(want[: REAL[1]].flatten(), minlength=num_physical)
    )


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
    sizes = [BLOCK] * len(REAL)
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
        (Runner(dp_size=3), (BLOCK, 2 * BLOCK)),
        (Runner(dp_size=3, modular=True), None),  # routed on local rows
        (Runner(dp_size=3, sequence_parallel=True), None),
        (Runner(dp_size=3, pcp_size=2), None),
    ],
    ids=["naive_dp", "modular_kernel", "sequence_parallel", "pcp"],
)
def test_the_runner_gives_its_router_this_ranks_block(dp_rank_1_of_3, runner, rows):
    hidden, logits = torch.zeros(BLOCK, 4), torch.zeros(BLOCK, 10)
    if runner.moe_config.pcp_size > 1:
        assert runner._eplb_own_rows() is None
        return
    gathered, _ = runner._maybe_dispatch(hidden, logits)
    assert runner.router.eplb_counted_rows == rows
    if rows is not None:
        assert gathered.shape[0] == BLOCK * len(REAL)


def test_a_single_dp_rank_counts_every_row(dp_rank_1_of_3):
    assert Runner(dp_size=1)._eplb_own_rows() is None
