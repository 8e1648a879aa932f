# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""A hot expert's tokens spread evenly over its replicas.

The kernel's choice is measured on the GPU, or on CPU tensors under Triton's
interpreter; the flattened-position rule PR #36261 used is evaluated in plain
torch on the same routing, to show the bound it misses.
"""

import os

import pytest
import torch

from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

DEVICES = (["cuda"] if torch.cuda.is_available() else []) + (
    ["cpu"] if os.environ.get("TRITON_INTERPRET") == "1" else []
)
NUM_TOKENS = 8192
NUM_LOGICAL = 16
HOT = 0
BOUND = 1.15


def hot_expert_routing(top_k: int, every: int, seed: int = 0) -> torch.Tensor:
    """Top-k ids where every `every`-th token has the hot expert as its first
    choice (slot 0, as scores sort it) and the other slots are distinct."""
    gen = torch.Generator().manual_seed(seed)
    others = torch.argsort(
        torch.rand(NUM_TOKENS, NUM_LOGICAL - 1, generator=gen), dim=1
    )
    ids = (others[:, :top_k] + 1).to(torch.int32)  # experts 1..15
    ids[::every, 0] = HOT
    return ids


def map_with_replicas(replicas: int, device: str):
    """The hot expert has `replicas` physical slots; the others one each."""
    physical_to_logical = list(range(NUM_LOGICAL)) + [HOT] * (replicas - 1)
    l2p = torch.full((NUM_LOGICAL, 1024), -1, dtype=torch.int64)
    counts = torch.zeros(NUM_LOGICAL, dtype=torch.int64)
    for physical, logical in enumerate(physical_to_logical):
        l2p[logical, counts[logical]] = physical
        counts[logical] += 1
    hot_physical = l2p[HOT, :replicas].tolist()
    return l2p.to(device), counts.to(device), len(physical_to_logical), hot_physical


def imbalance(load_per_replica: list[int]) -> float:
    mean = sum(load_per_replica) / len(load_per_replica)
    return max(load_per_replica) / mean


SHAPES = [(2, 2), (4, 2), (8, 4), (8, 8)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("top_k,replicas", SHAPES)
@pytest.mark.parametrize("every", [1, 8])
def test_hot_expert_load_is_even_over_replicas(device, top_k, replicas, every):
    ids = hot_expert_routing(top_k, every)
    l2p, counts, num_physical, hot_physical = map_with_replicas(replicas, device)
    load = torch.zeros(num_physical, dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(ids.to(device), load, l2p, counts, flag)

    per_replica = [int(load[p]) for p in hot_physical]
    assert sum(per_replica) == NUM_TOKENS // every
    measured = imbalance(per_replica)
    print(f"top_k={top_k} R={replicas} every={every}: max/mean {measured:.3f}")
    assert measured < BOUND, per_replica

    # The PR's rule on the same routing: replica = flattened position % R.
    positions = torch.arange(ids.numel()).reshape(ids.shape)
    hot_positions = positions[ids == HOT]
    pr_per_replica = torch.bincount(hot_positions % replicas, minlength=replicas)
    pr_measured = imbalance(pr_per_replica.tolist())
    print(f"  PR #36261 rule: max/mean {pr_measured:.3f}")
    assert pr_measured >= BOUND

    # Every top-k slot of a token takes the same replica index.
    out = out.cpu()
    hot_rows = (ids == HOT).any(dim=1)
    chosen = out[hot_rows, 0]
    tokens = torch.nonzero(hot_rows).flatten()
    assert torch.equal(
        chosen, torch.tensor(hot_physical)[_token_replica(tokens, replicas)]
    )


def _token_replica(tokens: torch.Tensor, replicas: int) -> torch.Tensor:
    return (((tokens * 2654435769) & 0xFFFFFFFF) >> 16) % replicas


@pytest.mark.parametrize("device", DEVICES)
def test_all_slots_of_a_token_agree(device):
    # Every expert has two replicas: each token's k physical ids share one
    # replica index.
    physical_to_logical = list(range(NUM_LOGICAL)) * 2
    l2p = torch.full((NUM_LOGICAL, 1024), -1, dtype=torch.int64)
    l2p[:, 0] = torch.arange(NUM_LOGICAL)
    l2p[:, 1] = torch.arange(NUM_LOGICAL) + NUM_LOGICAL
    counts = torch.full((NUM_LOGICAL,), 2, dtype=torch.int64)
    ids = hot_expert_routing(top_k=8, every=1)[:512]
    load = torch.zeros(len(physical_to_logical), dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(
        ids.to(device), load, l2p.to(device), counts.to(device), flag
    ).cpu()
    replica_index = out // NUM_LOGICAL
    assert (replica_index == replica_index[:, :1]).all()
    assert 0 < int(replica_index[:, 0].sum()) < 512  # both replicas used
