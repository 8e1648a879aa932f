# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The fused EPLB map+record kernel against a pure-torch reference.

Runs on the GPU, and on CPU tensors under Triton's interpreter
(TRITON_INTERPRET=1; on a machine without a GPU driver also set
CUDA_VISIBLE_DEVICES to an empty string so that vLLM keeps Triton enabled).
Physical ids and load counts must match the reference exactly.
"""

import os
import zlib

import pytest
import torch

from vllm.distributed.eplb.eplb_state import EplbLayerState
from vllm.model_executor.layers.fused_moe.config import RoutingMethodType
from vllm.model_executor.layers.fused_moe.router.base_router import (
    BaseRouter,
    eplb_map_and_record_triton,
)

DEVICES = (["cuda"] if torch.cuda.is_available() else []) + (
    ["cpu"] if os.environ.get("TRITON_INTERPRET") == "1" else []
)
MAP_SLOTS = 1024  # vLLM's map width: MAX_EXPERT_REDUNDANCY + 1


# PR #36261 picks the replica by flattened (token, slot) position; the
# follow-up "[EPLB] Pick replicas per token, without bias" sets "token_hash".
REPLICA_RULE = "flattened_position"
KNUTH_MULTIPLIER = 2654435769  # floor(2**32 / golden ratio)


def replica_key(positions: torch.Tensor, top_k: int) -> torch.Tensor:
    """The number a replica index is taken modulo the replica count of."""
    if REPLICA_RULE == "flattened_position":
        return positions
    # Fibonacci hashing of the token index: the high half of the low 32 bits.
    tokens = positions // top_k
    return ((tokens * KNUTH_MULTIPLIER) & 0xFFFFFFFF) >> 16


def reference_map_and_record(
    topk_ids: torch.Tensor,
    expert_load_view: torch.Tensor,
    logical_to_physical_map: torch.Tensor,
    logical_replica_count: torch.Tensor,
    record: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rule in plain torch on the CPU: the replica index comes from
    REPLICA_RULE, modulo the replica count (clamped to [1, map width]); ids
    outside the logical range map to -1; counted with bincount when
    recording."""
    ids = topk_ids.cpu().to(torch.int64).flatten()
    l2p = logical_to_physical_map.cpu()
    counts = logical_replica_count.cpu().to(torch.int64)
    num_logical, slots = l2p.shape
    num_physical = expert_load_view.numel()
    valid = (ids >= 0) & (ids < num_logical)
    rows = torch.where(valid, ids, torch.zeros_like(ids))
    replicas = counts[rows].clamp(min=1, max=slots)
    replica = replica_key(torch.arange(ids.numel()), topk_ids.shape[-1]) % replicas
    physical = torch.where(valid, l2p[rows, replica], torch.full_like(ids, -1))
    load = expert_load_view.cpu().to(torch.int64).clone()
    if record:
        counted = physical[(physical >= 0) & (physical < num_physical)]
        load += torch.bincount(counted, minlength=num_physical)
    return physical.reshape(topk_ids.shape), load


def build_map(
    physical_to_logical: list[int], num_logical: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's layout: (num_logical, 1024) int64 padded with -1, and int64
    replica counts."""
    l2p = torch.full((num_logical, MAP_SLOTS), -1, dtype=torch.int64)
    counts = torch.zeros(num_logical, dtype=torch.int64)
    for physical, logical in enumerate(physical_to_logical):
        l2p[logical, counts[logical]] = physical
        counts[logical] += 1
    return l2p.to(device), counts.to(device)


def physical_layout(kind: str, num_logical: int, gen: torch.Generator) -> list[int]:
    """physical slot -> logical expert for the map kinds the PR tests."""
    if kind == "identity":
        return list(range(num_logical))
    if kind == "shuffled":
        return torch.randperm(num_logical, generator=gen).tolist()
    if kind == "partial":  # a quarter of the experts get a second replica
        extra = torch.randperm(num_logical, generator=gen)[: max(1, num_logical // 4)]
        return list(range(num_logical)) + extra.tolist()
    if kind == "full":  # every expert replicated twice
        return list(range(num_logical)) * 2
    if kind == "uneven":  # 1..4 replicas each, interleaved
        reps = torch.randint(1, 5, (num_logical,), generator=gen).tolist()
        layout = [e for e, r in enumerate(reps) for _ in range(r)]
        return [layout[i] for i in torch.randperm(len(layout), generator=gen).tolist()]
    raise ValueError(kind)


def run_both(topk_ids, load, l2p, counts, record: bool):
    expected_ids, expected_load = reference_map_and_record(
        topk_ids, load, l2p, counts, record
    )
    flag = torch.tensor(record, dtype=torch.bool, device=load.device)
    out = eplb_map_and_record_triton(topk_ids, load, l2p, counts, flag)
    assert out.dtype == topk_ids.dtype
    assert out.shape == topk_ids.shape
    assert out.device == topk_ids.device
    torch.testing.assert_close(out.cpu().to(torch.int64), expected_ids, rtol=0, atol=0)
    torch.testing.assert_close(
        load.cpu().to(torch.int64), expected_load, rtol=0, atol=0
    )
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kind", ["identity", "shuffled", "sparse", "partial", "full", "uneven"]
)
@pytest.mark.parametrize("record", [True, False])
def test_map_kinds(device: str, kind: str, record: bool):
    gen = torch.Generator().manual_seed(zlib.crc32(f"{kind}-{record}".encode()))
    num_logical, num_tokens, top_k = 32, 64, 4
    if kind == "sparse":
        # Physical ids spread over a wider load view; odd slots unused.
        l2p, counts = build_map(list(range(num_logical)), num_logical, "cpu")
        l2p[:, 0] = l2p[:, 0] * 2 + 1
        l2p, counts = l2p.to(device), counts.to(device)
        num_physical = 2 * num_logical + 1
    else:
        layout = physical_layout(kind, num_logical, gen)
        l2p, counts = build_map(layout, num_logical, device)
        num_physical = len(layout)
    topk_ids = torch.randint(0, num_logical, (num_tokens, top_k), generator=gen)
    load = torch.randint(0, 5, (num_physical,), generator=gen, dtype=torch.int32)
    run_both(topk_ids.to(torch.int32).to(device), load.to(device), l2p, counts, record)


# The same (tokens, top_k, physical, max replicas, dtype) cases on every
# device; fewer and smaller than on a GPU alone, as the interpreter is slow.
RANDOM_CASES = [
    (1, 1, 8, 1, torch.int32),
    (7, 2, 16, 2, torch.int64),
    (33, 8, 288, 4, torch.int32),
    (256, 6, 64, 3, torch.int64),
    (1024, 8, 288, 2, torch.int32),
    (4096, 8, 256, 1, torch.int32),
    (4096, 8, 288, 4, torch.int64),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", RANDOM_CASES, ids=str)
@pytest.mark.parametrize("record", [True, False])
def test_random_against_reference(device: str, case, record: bool):
    num_tokens, top_k, num_physical, max_replicas, dtype = case
    gen = torch.Generator().manual_seed(num_tokens * 1000 + top_k)
    # Every logical expert gets 1..max_replicas of the physical slots.
    num_logical = max(1, num_physical * 2 // (max_replicas + 1))
    replicas = [1] * num_logical
    for _ in range(num_physical - num_logical):
        growable = [e for e, r in enumerate(replicas) if r < max_replicas]
        pick = int(torch.randint(0, len(growable), (1,), generator=gen))
        replicas[growable[pick]] += 1
    layout = [e for e, r in enumerate(replicas) for _ in range(r)]
    layout = [layout[i] for i in torch.randperm(len(layout), generator=gen).tolist()]
    l2p, counts = build_map(layout, num_logical, device)
    topk_ids = torch.randint(0, num_logical, (num_tokens, top_k), generator=gen)
    load = torch.zeros(len(layout), dtype=torch.int32)
    run_both(topk_ids.to(dtype).to(device), load.to(device), l2p, counts, record)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_invalid_ids_map_to_minus_one_and_are_not_counted(device: str, dtype):
    num_logical = 8
    l2p, counts = build_map(list(range(num_logical)) + [0, 1], num_logical, device)
    huge = torch.iinfo(dtype).max
    ids = torch.tensor(
        [[-1, num_logical], [huge, 3], [-(2**20), 0], [num_logical + 1, 1]],
        dtype=dtype,
        device=device,
    )
    load = torch.zeros(num_logical + 2, dtype=torch.int32, device=device)
    out = run_both(ids, load, l2p, counts, record=True)
    invalid = torch.tensor([[1, 1], [1, 0], [1, 0], [1, 0]], dtype=torch.bool)
    assert (out.cpu()[invalid] == -1).all()
    assert int(load.sum()) == 3  # only the three valid ids


@pytest.mark.parametrize("device", DEVICES)
def test_empty_input_is_returned_untouched(device: str):
    l2p, counts = build_map(list(range(4)), 4, device)
    load = torch.zeros(4, dtype=torch.int32, device=device)
    ids = torch.empty((0, 8), dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(ids, load, l2p, counts, flag)
    assert out.shape == (0, 8) and out.dtype == torch.int32
    assert int(load.abs().sum()) == 0


@pytest.mark.parametrize("device", DEVICES)
def test_zero_replica_count_is_treated_as_one(device: str):
    l2p, counts = build_map([0, 1, 2, 3, 2], 4, device)
    counts[2] = 0  # a corrupt count must neither divide by zero nor escape
    counts[3] = 5000  # nor index past the map's width
    ids = torch.tensor([[2, 3], [2, 3], [2, 3]], dtype=torch.int32, device=device)
    load = torch.zeros(5, dtype=torch.int32, device=device)
    out = run_both(ids, load, l2p, counts, record=True)
    assert out.cpu()[:, 0].tolist() == [2, 2, 2]


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_ids(device: str):
    gen = torch.Generator().manual_seed(7)
    l2p, counts = build_map(list(range(16)) + list(range(8)), 16, device)
    wide = torch.randint(0, 16, (40, 16), generator=gen, dtype=torch.int32).to(device)
    for ids in (wide[:, ::2], wide.t()[:8]):
        assert not ids.is_contiguous()
        load = torch.zeros(24, dtype=torch.int32, device=device)
        run_both(ids, load, l2p, counts, record=True)


@pytest.mark.parametrize("device", DEVICES)
def test_flag_is_read_on_the_device_each_call(device: str):
    l2p, counts = build_map(list(range(8)), 8, device)
    ids = torch.arange(8, dtype=torch.int32, device=device).reshape(4, 2)
    load = torch.zeros(8, dtype=torch.int32, device=device)
    flag = torch.zeros((), dtype=torch.bool, device=device)
    eplb_map_and_record_triton(ids, load, l2p, counts, flag)
    assert int(load.sum()) == 0
    flag.fill_(True)
    eplb_map_and_record_triton(ids, load, l2p, counts, flag)
    assert load.tolist() == [1] * 8


class TopkRouter(BaseRouter):
    """Plain torch top-k routing, so the router's EPLB plumbing runs
    anywhere."""

    @property
    def routing_method_type(self) -> RoutingMethodType:
        return RoutingMethodType.FUSED_TOPK

    def _compute_routing(self, hidden_states, router_logits, indices_type):
        weights, ids = torch.topk(router_logits, self.top_k, dim=-1)
        return weights, ids.to(torch.int32)


def test_router_with_eplb_off_returns_logical_ids():
    logits = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    router = TopkRouter(top_k=2, global_num_experts=8, eplb_state=EplbLayerState())
    _, ids = router.select_experts(torch.zeros(16, 4), logits)
    assert torch.equal(ids, torch.topk(logits, 2, dim=-1).indices.to(torch.int32))


def test_router_with_eplb_on_requires_the_record_flag():
    state = EplbLayerState(
        expert_load_view=torch.zeros(8, dtype=torch.int32),
        logical_to_physical_map=torch.arange(8).unsqueeze(-1),
        logical_replica_count=torch.ones(8, dtype=torch.int64),
    )
    router = TopkRouter(
        top_k=2, global_num_experts=8, eplb_state=state, enable_eplb=True
    )
    with pytest.raises(ValueError, match="should_record_tensor"):
        router.select_experts(torch.zeros(4, 4), torch.randn(4, 8))
