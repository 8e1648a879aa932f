# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Tokens a fixed step apart spread evenly over a hot expert's replicas.

Upstream's replica rule (#40810) is (token * 2654435769 mod 2**32) mod R.
For R a power of two that is (token * odd) mod R, a function of token mod R
alone: tokens that pick the hot expert a multiple of R apart (the first
token of each prompt in a batch of equal-length prompts, say) all take one
replica. The kernel takes bits 16-31 of the product instead, which do not
repeat with that period. Both rules are measured on the same routing: the
kernel's on the GPU or under Triton's interpreter, upstream's in plain torch.
"""

import pytest
import torch

from tests.kernels.moe.eplb_utils import (
    build_map,
    check_map_and_record,
    kernel_devices,
    physical_layout,
)
from tests.kernels.moe.test_eplb_replica_balance import (
    BOUND,
    HOT,
    hot_expert_routing,
    hot_replicas_taken,
    imbalance,
)
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

DEVICES = kernel_devices()
MULTIPLIER = 2654435769  # floor(2**32 / golden ratio)


def upstream_replica(tokens: torch.Tensor, replicas) -> torch.Tensor:
    return ((tokens * MULTIPLIER) & 0xFFFFFFFF) % replicas


def high_bits_replica(tokens: torch.Tensor, replicas) -> torch.Tensor:
    return (((tokens * MULTIPLIER) & 0xFFFFFFFF) >> 16) % replicas


def replica_of_each_id(
    topk_ids: torch.Tensor, logical_replica_count: torch.Tensor
) -> torch.Tensor:
    """The replica index the kernel's rule gives each id of (tokens, top_k)
    ids, -1 for ids outside [0, num_logical)."""
    ids = topk_ids.cpu().to(torch.int64).reshape(-1, topk_ids.shape[-1])
    counts = logical_replica_count.cpu().to(torch.int64)
    valid = (ids >= 0) & (ids < counts.numel())
    replicas = counts[torch.where(valid, ids, 0)].clamp(min=1)
    tokens = torch.arange(ids.shape[0]).unsqueeze(-1)
    return torch.where(valid, high_bits_replica(tokens, replicas), -1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("replicas", [2, 4, 8])
@pytest.mark.parametrize("every", [1, 8, 32])
def test_strided_tokens_spread_over_replicas(device, replicas, every):
    ids = hot_expert_routing(top_k=8, every=every)
    taken, per_replica = hot_replicas_taken(ids, replicas, device)
    measured = imbalance(per_replica)
    tokens = torch.nonzero(ids == HOT)[:, 0]
    upstream = torch.bincount(upstream_replica(tokens, replicas), minlength=replicas)
    upstream_measured = imbalance(upstream.tolist())
    print(
        f"R={replicas} every={every} ({len(tokens)} tokens): max/mean "
        f"kernel {measured:.3f}, upstream #40810 {upstream_measured:.3f}"
    )
    assert torch.equal(taken[ids == HOT], high_bits_replica(tokens, replicas))
    assert measured < BOUND, per_replica
    if every % replicas == 0:
        assert upstream_measured == pytest.approx(replicas)  # all on one


@pytest.mark.parametrize("device", DEVICES)
def test_every_id_takes_the_high_bits_replica(device):
    gen = torch.Generator().manual_seed(5)
    layout = physical_layout("uneven", 32, gen)  # 1..4 replicas each
    l2p, counts = build_map(layout, 32, device)
    ids = torch.randint(-2, 34, (1000, 6), generator=gen, dtype=torch.int32)
    load = torch.zeros(len(layout), dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(ids.to(device), load, l2p, counts, flag)
    before = torch.zeros_like(load)
    taken = check_map_and_record(ids, out, l2p, counts, before, load, record=True)
    assert torch.equal(taken, replica_of_each_id(ids, counts))
