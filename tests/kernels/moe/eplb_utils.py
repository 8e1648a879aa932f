# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Shared by the EPLB map+record kernel tests: the devices the kernel runs
on, maps in vLLM's layout, and the check every replica rule must pass."""

import os

import pytest
import torch

from vllm.model_executor.layers.fused_moe.config import RoutingMethodType
from vllm.model_executor.layers.fused_moe.router.base_router import BaseRouter

MAP_SLOTS = 1024  # vLLM's map width: MAX_EXPERT_REDUNDANCY + 1


def kernel_devices() -> list[str]:
    """The GPU, and CPU tensors under Triton's interpreter. With neither, the
    kernel tests would all be skipped and pass: fail their collection instead."""
    devices = ["cuda"] if torch.cuda.is_available() else []
    if os.environ.get("TRITON_INTERPRET") == "1":
        devices.append("cpu")
    if not devices:
        pytest.fail(
            "The EPLB kernel tests need a GPU or Triton's interpreter: set "
            "TRITON_INTERPRET=1 (on a machine without a GPU driver also "
            "CUDA_VISIBLE_DEVICES= so that vLLM keeps Triton enabled).",
            pytrace=False,
        )
    return devices


def build_map(
    physical_to_logical: list[int],
    num_logical: int,
    device: str,
    map_slots: int = MAP_SLOTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's layout: (num_logical, map_slots) int64 padded with -1, and int64
    replica counts."""
    l2p = torch.full((num_logical, map_slots), -1, dtype=torch.int64)
    counts = torch.zeros(num_logical, dtype=torch.int64)
    for physical, logical in enumerate(physical_to_logical):
        l2p[logical, counts[logical]] = physical
        counts[logical] += 1
    return l2p.to(device), counts.to(device)


def redundant_map(
    device: str, num_logical: int = 12, map_slots: int = MAP_SLOTS
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every other expert with a second replica (12 logical on 18 physical);
    also returns the number of physical experts."""
    layout = list(range(num_logical)) + list(range(0, num_logical, 2))
    return *build_map(layout, num_logical, device, map_slots), len(layout)


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


def topk_routing(
    num_rows: int, num_logical: int, top_k: int, seed: int = 0
) -> torch.Tensor:
    """int32 ids of `top_k` distinct experts per row, as a router picks them."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(num_rows, num_logical, generator=gen)
    return scores.topk(top_k, dim=-1).indices.to(torch.int32)


def check_map_and_record(
    topk_ids: torch.Tensor,
    out: torch.Tensor,
    logical_to_physical_map: torch.Tensor,
    logical_replica_count: torch.Tensor,
    load_before: torch.Tensor,
    load_after: torch.Tensor,
    record: bool,
    counted_rows: slice | torch.Tensor | None = None,
) -> torch.Tensor:
    """Assert what map+record guarantees whichever replica it picks: a valid
    id maps to one of its expert's first `count` map slots (the count clamped
    to [1, map width]), an id outside [0, num_logical) to -1; when recording,
    the load grows by the bincount of the physical ids in [0, num_physical)
    of `counted_rows` (all rows by default), else not at all.

    Returns the replica index each id took, -1 for invalid ids, shaped as
    (tokens, top_k)."""
    ids = topk_ids.cpu().to(torch.int64).reshape(-1, topk_ids.shape[-1])
    out = out.cpu().to(torch.int64).reshape(ids.shape)
    l2p = logical_to_physical_map.cpu()
    num_logical, map_slots = l2p.shape
    valid = (ids >= 0) & (ids < num_logical)
    rows = torch.where(valid, ids, torch.zeros_like(ids))
    replicas = logical_replica_count.cpu().to(torch.int64)[rows].clamp(1, map_slots)
    span = int(replicas.max()) if ids.numel() else 1
    candidates = l2p[:, :span][rows]  # (tokens, top_k, span)
    allowed = torch.arange(span) < replicas.unsqueeze(-1)
    taken = (candidates == out.unsqueeze(-1)) & allowed
    assert taken.any(dim=-1)[valid].all(), "an id mapped outside its replicas"
    assert (out[~valid] == -1).all(), "an invalid id did not map to -1"

    expected = load_before.cpu().to(torch.int64).clone()
    if record:
        counted = out if counted_rows is None else out[counted_rows]
        counted = counted.flatten()
        counted = counted[(counted >= 0) & (counted < expected.numel())]
        expected += torch.bincount(counted, minlength=expected.numel())
    assert torch.equal(load_after.cpu().to(torch.int64), expected)
    return torch.where(valid, taken.to(torch.int8).argmax(dim=-1), -1)


# What a corrupt map could hold in place of a physical id.
CORRUPT_PHYSICAL_IDS = ["at_end", "past_end", "int32_max", "negative"]


def corrupt_map(
    kind: str, num_logical: int, num_physical: int, device: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A map whose last expert's only replica and expert 0's second replica
    hold the same out-of-range physical id of `kind` (one of
    CORRUPT_PHYSICAL_IDS); the first `num_physical - num_logical` experts have
    two replicas. Also returns that id."""
    assert 0 < num_physical - num_logical < num_logical
    bad = {
        "at_end": num_physical,
        "past_end": num_physical + 5,
        "int32_max": 2**31 - 1,
        "negative": -2,
    }[kind]
    layout = list(range(num_logical)) + list(range(num_physical - num_logical))
    l2p, counts = build_map(layout, num_logical, "cpu")
    l2p[num_logical - 1, 0] = bad
    l2p[0, 1] = bad
    return l2p.to(device), counts.to(device), bad


def guarded_load(num_physical: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A zeroed int32 load row that is a view into a larger zeroed buffer, so
    that counting outside the row shows in the guard cells around it. The
    guard after the row reaches past the per-tile histogram's spill bin
    (below 2 * num_physical + 2). Returns (buffer, row)."""
    guard = num_physical + 8
    buffer = torch.zeros(num_physical + 2 * guard, dtype=torch.int32, device=device)
    return buffer, buffer[guard : guard + num_physical]


def check_counted_inside_row(
    buffer: torch.Tensor, row: torch.Tensor, out: torch.Tensor
) -> None:
    """The guard cells around `row` in `buffer` are still zero, and the row
    holds the bincount of the physical ids in [0, num_physical) of `out`."""
    num_physical = row.numel()
    guard = row.storage_offset() - buffer.storage_offset()
    cells = buffer.cpu().to(torch.int64)
    outside = torch.cat([cells[:guard], cells[guard + num_physical :]])
    assert int(outside.count_nonzero()) == 0, "counted outside the load row"
    ids = out.cpu().to(torch.int64).flatten()
    ids = ids[(ids >= 0) & (ids < num_physical)]
    expected = torch.bincount(ids, minlength=num_physical)
    assert torch.equal(cells[guard : guard + num_physical], expected)


class TopkRouter(BaseRouter):
    """Plain torch top-k routing, so the router's EPLB plumbing runs
    anywhere."""

    @property
    def routing_method_type(self) -> RoutingMethodType:
        return RoutingMethodType.FUSED_TOPK

    def _compute_routing(self, hidden_states, router_logits, indices_type):
        weights, ids = torch.topk(router_logits, self.top_k, dim=-1)
        return weights, ids.to(torch.int32)
