# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Tokens a fixed step apart spread evenly over a hot expert's replicas.

Upstream's replica rule (#40810) is (token * 2654435769 mod 2**32) mod R.
For R a power of two that is (token * odd) mod R, a function of token mod R
alone: tokens that pick the hot expert a multiple of R apart all take one
replica. The router takes bits 16-31 of the product instead. Both rules are
measured on the same routing: the router's on the GPU or under Triton's
interpreter, upstream's in plain torch.

Runs on a GPU, or on CPU tensors under TRITON_INTERPRET=1."""

import pytest
import torch

from tests.kernels.moe.eplb_router_entry import DEVICES, cuda_alike_entry_point

MULTIPLIER = 2654435769  # floor(2**32 / golden ratio)
NUM_TOKENS = 8192
NUM_LOGICAL = 16
HOT = 0
BOUND = 1.07


@pytest.fixture
def map_and_record(monkeypatch):
    yield from cuda_alike_entry_point(monkeypatch)


def upstream_replica(tokens: torch.Tensor, replicas) -> torch.Tensor:
    return ((tokens * MULTIPLIER) & 0xFFFFFFFF) % replicas


def high_bits_replica(tokens: torch.Tensor, replicas) -> torch.Tensor:
    return (((tokens * MULTIPLIER) & 0xFFFFFFFF) >> 16) % replicas


def hot_expert_routing(top_k: int, every: int) -> torch.Tensor:
    """Top-k ids where every `every`-th token has the hot expert first and
    the other slots are distinct other experts."""
    gen = torch.Generator().manual_seed(0)
    others = torch.argsort(
        torch.rand(NUM_TOKENS, NUM_LOGICAL - 1, generator=gen), dim=1
    )
    ids = (others[:, :top_k] + 1).to(torch.int32)  # experts 1..15
    ids[::every, 0] = HOT
    return ids


def map_with_hot_replicas(map_and_record, ids, replicas: int, device: str):
    """Physical ids and load with `replicas` slots for the hot expert (its
    first at HOT, the rest past the other experts) and one for the others."""
    l2p = torch.full((NUM_LOGICAL, 1024), -1, dtype=torch.int64)
    l2p[:, 0] = torch.arange(NUM_LOGICAL)
    l2p[HOT, 1:replicas] = torch.arange(NUM_LOGICAL, NUM_LOGICAL + replicas - 1)
    counts = torch.ones(NUM_LOGICAL, dtype=torch.int64)
    counts[HOT] = replicas
    load = torch.zeros(NUM_LOGICAL + replicas - 1, dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = map_and_record(ids.to(device), load, l2p.to(device), counts.to(device), flag)
    return out.cpu().long(), load.cpu().long(), l2p[HOT, :replicas]


def imbalance(per_replica: torch.Tensor) -> float:
    """The largest replica load over the mean: 1.0 is even, R all on one."""
    per_replica = per_replica.double()
    return (per_replica.max() / per_replica.mean()).item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("replicas", [2, 4, 8])
@pytest.mark.parametrize("every", [1, 8, 32])
def test_strided_tokens_spread_over_replicas(map_and_record, device, replicas, every):
    ids = hot_expert_routing(top_k=8, every=every)
    out, load, hot_physical = map_with_hot_replicas(
        map_and_record, ids, replicas, device
    )
    tokens = torch.nonzero(ids == HOT)[:, 0]
    # Each hot id lands on the replica the high-bits rule names, and the
    # load counts every id where it landed.
    want = hot_physical[high_bits_replica(tokens, replicas)]
    assert torch.equal(out[ids == HOT], want)
    assert torch.equal(load, torch.bincount(out.flatten(), minlength=load.numel()))
    measured = imbalance(load[hot_physical])
    upstream = torch.bincount(upstream_replica(tokens, replicas), minlength=replicas)
    print(
        f"R={replicas} every={every} ({len(tokens)} tokens): max/mean "
        f"router {measured:.3f}, upstream #40810 {imbalance(upstream):.3f}"
    )
    assert measured < BOUND, load[hot_physical]
    if every % replicas == 0:
        # Upstream's rule puts all of them on one replica.
        assert imbalance(upstream) == pytest.approx(replicas)


@pytest.mark.parametrize("device", DEVICES)
def test_every_id_takes_the_high_bits_replica(map_and_record, device):
    gen = torch.Generator().manual_seed(5)
    counts = torch.randint(1, 6, (32,), generator=gen)
    physical = torch.randperm(int(counts.sum()), generator=gen)
    l2p = torch.full((32, 1024), -1, dtype=torch.int64)
    start = 0
    for logical, count in enumerate(counts.tolist()):
        l2p[logical, :count] = physical[start : start + count]
        start += count
    # 70000 tokens: token indices past 2**16, where the product wraps.
    ids = torch.randint(-2, 34, (70_000, 3), generator=gen, dtype=torch.int32)
    load = torch.zeros(start, dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = map_and_record(ids.to(device), load, l2p.to(device), counts.to(device), flag)
    valid = (ids >= 0) & (ids < 32)
    rows = torch.where(valid, ids, 0).long()
    tokens = torch.arange(ids.shape[0]).unsqueeze(-1)
    want = torch.where(valid, l2p[rows, high_bits_replica(tokens, counts[rows])], -1)
    assert torch.equal(out.cpu().long(), want)
