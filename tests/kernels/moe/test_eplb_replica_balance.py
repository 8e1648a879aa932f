# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""A hot expert's tokens spread evenly over its replicas, whichever top-k
slot it takes.

PR #36261 takes the replica from the flattened (token, slot) position: with
top_k a multiple of the replica count, every token that has the hot expert
first takes the same replica. Taken per token, all slots of a token agree,
and a run of consecutive tokens (or tokens an odd step apart) must spread
evenly. The kernel's choice is measured on the GPU, or on CPU tensors under
Triton's interpreter; the PR's rule is evaluated in plain torch on the same
routing, to show the bound it misses.
"""

import pytest
import torch

from tests.kernels.moe.eplb_utils import (
    build_map,
    check_map_and_record,
    kernel_devices,
)
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

DEVICES = kernel_devices()
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


def hot_replicas_taken(ids: torch.Tensor, replicas: int, device: str):
    """Map and record `ids` with `replicas` physical slots for the hot expert
    (one for the others); returns the replica index each id took and the
    hot expert's load per replica."""
    layout = list(range(NUM_LOGICAL)) + [HOT] * (replicas - 1)
    l2p, counts = build_map(layout, NUM_LOGICAL, device)
    load = torch.zeros(len(layout), dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    ids = ids.to(device)
    out = eplb_map_and_record_triton(ids, load, l2p, counts, flag)
    before = torch.zeros_like(load)
    taken = check_map_and_record(ids, out, l2p, counts, before, load, record=True)
    hot_physical = l2p[HOT, :replicas].cpu()
    return taken, load.cpu()[hot_physical].tolist()


def imbalance(load_per_replica: list[int]) -> float:
    """max / mean over replicas: 1.0 is even, R is all on one of R."""
    mean = sum(load_per_replica) / len(load_per_replica)
    return max(load_per_replica) / mean


# (top_k, replicas): top_k a multiple of the replica count.
SHAPES = [(2, 2), (4, 2), (6, 3), (8, 4), (8, 8)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("top_k,replicas", SHAPES)
@pytest.mark.parametrize("every", [1, 3])
def test_hot_expert_load_is_even_over_replicas(device, top_k, replicas, every):
    ids = hot_expert_routing(top_k, every)
    _, per_replica = hot_replicas_taken(ids, replicas, device)
    assert sum(per_replica) == len(range(0, NUM_TOKENS, every))
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


@pytest.mark.parametrize("device", DEVICES)
def test_all_slots_of_a_token_agree(device):
    # Every expert has two replicas: each token's k ids take one replica index.
    ids = hot_expert_routing(top_k=8, every=1)[:512]
    l2p, counts = build_map(list(range(NUM_LOGICAL)) * 2, NUM_LOGICAL, device)
    load = torch.zeros(2 * NUM_LOGICAL, dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(ids.to(device), load, l2p, counts, flag)
    before = torch.zeros_like(load)
    taken = check_map_and_record(ids, out, l2p, counts, before, load, record=True)
    assert (taken == taken[:, :1]).all()
    assert 0 < int(taken[:, 0].sum()) < 512  # both replicas used
