# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Map+record counting into [num_shards, num_physical] copies of a load row:
the copies sum to the bincount of the counted ids, and nothing is written
outside them, whatever the map holds."""

import pytest
import torch

from tests.kernels.moe.eplb_utils import build_map, kernel_devices, topk_routing
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

NUM_LOGICAL = 12
TOP_K = 4
GUARD = 64  # int32 cells on each side of the shards
# Every other logical expert has a second replica: 18 physical experts.
LAYOUT = list(range(NUM_LOGICAL)) + list(range(0, NUM_LOGICAL, 2))
NUM_PHYSICAL = len(LAYOUT)


def guarded_shards(num_shards: int | None, device: str):
    """A contiguous [num_shards, NUM_PHYSICAL] view (a [NUM_PHYSICAL] row for
    None) into a zeroed buffer with GUARD cells before and after it."""
    rows = 1 if num_shards is None else num_shards
    buffer = torch.zeros(rows * NUM_PHYSICAL + 2 * GUARD, dtype=torch.int32)
    buffer = buffer.to(device)
    load = buffer[GUARD : GUARD + rows * NUM_PHYSICAL]
    if num_shards is not None:
        load = load.view(num_shards, NUM_PHYSICAL)
    return buffer, load


def guards_untouched(buffer: torch.Tensor) -> bool:
    return not buffer[:GUARD].any() and not buffer[-GUARD:].any()


def counted(out: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
    """The bincount of the valid physical ids of the counted rows (all)."""
    ids = out.cpu().long()
    ids = (ids if rows is None else ids[rows]).flatten()
    ids = ids[(ids >= 0) & (ids < NUM_PHYSICAL)]
    return torch.bincount(ids, minlength=NUM_PHYSICAL)


def record(ids, load, l2p, counts, flag=True, **kwargs):
    enabled = torch.tensor(flag, device=load.device)
    return eplb_map_and_record_triton(ids, load, l2p, counts, enabled, **kwargs)


@pytest.mark.parametrize("device", kernel_devices())
@pytest.mark.parametrize("num_shards", [None, 1, 3, 64])
@pytest.mark.parametrize("num_tokens", [1, 5, 64, 257, 1024, 4096])
def test_shard_sum_is_the_bincount(device, num_shards, num_tokens):
    l2p, counts = build_map(LAYOUT, NUM_LOGICAL, device)
    buffer, load = guarded_shards(num_shards, device)
    ids = topk_routing(num_tokens, NUM_LOGICAL, TOP_K, seed=num_tokens).to(device)
    out = record(ids, load, l2p, counts)
    total = load.cpu().long() if num_shards is None else load.cpu().long().sum(0)
    assert torch.equal(total, counted(out))
    assert int(total.sum()) == num_tokens * TOP_K
    assert guards_untouched(buffer)


@pytest.mark.parametrize("device", kernel_devices())
@pytest.mark.parametrize(
    "num_real, window",
    [
        (0, None),  # an idle rank's dummy batch
        (37, None),  # padding past the real rows
        (300, (100, 200, 0)),  # a DP rank's block of a gathered batch
        (150, (0, 300, 120)),  # the second micro-batch, starting at row 120
    ],
)
def test_only_real_own_rows_are_counted(device, num_real, window):
    num_rows = 300
    l2p, counts = build_map(LAYOUT, NUM_LOGICAL, device)
    buffer, load = guarded_shards(64, device)
    ids = topk_routing(num_rows, NUM_LOGICAL, TOP_K, seed=num_real).to(device)
    real = torch.tensor(num_real, dtype=torch.int64, device=device)
    out = record(ids, load, l2p, counts, real_token_count=real, counted_rows=window)
    first, end, shift = (0, num_rows, 0) if window is None else window
    rows = [r for r in range(first, end) if r - first + shift < num_real]
    expected = counted(out, rows) if rows else torch.zeros(NUM_PHYSICAL).long()
    assert torch.equal(load.cpu().long().sum(0), expected)
    assert guards_untouched(buffer)


@pytest.mark.parametrize("device", kernel_devices())
def test_nothing_is_counted_with_recording_off(device):
    l2p, counts = build_map(LAYOUT, NUM_LOGICAL, device)
    buffer, load = guarded_shards(64, device)
    ids = topk_routing(2048, NUM_LOGICAL, TOP_K).to(device)
    record(ids, load, l2p, counts, flag=False)
    assert not buffer.any()


@pytest.mark.parametrize("device", kernel_devices())
@pytest.mark.parametrize("num_shards", [None, 1, 64])
def test_a_corrupt_map_never_counts_outside_the_shards(device, num_shards):
    """Physical ids past the experts or negative are mapped as they are, and
    neither counted nor written anywhere else."""
    l2p, counts = build_map(LAYOUT, NUM_LOGICAL, device)
    l2p[0, 0], l2p[1, 0], l2p[2, 0] = NUM_PHYSICAL, NUM_PHYSICAL + 7, -5
    buffer, load = guarded_shards(num_shards, device)
    ids = topk_routing(2048, NUM_LOGICAL, TOP_K, seed=3).to(device)
    out = record(ids, load, l2p, counts)
    total = load.cpu().long() if num_shards is None else load.cpu().long().sum(0)
    assert torch.equal(total, counted(out))
    assert int(total.sum()) < 2048 * TOP_K  # the corrupt ids were routed
    assert guards_untouched(buffer)


@pytest.mark.parametrize("device", kernel_devices())
def test_a_load_it_cannot_count_into_is_refused(device):
    l2p, counts = build_map(LAYOUT, NUM_LOGICAL, device)
    ids = topk_routing(8, NUM_LOGICAL, TOP_K).to(device)
    strided = torch.zeros(NUM_PHYSICAL, 4, dtype=torch.int32, device=device).t()
    cube = torch.zeros(2, 2, NUM_PHYSICAL, dtype=torch.int32, device=device)
    for load in (strided, cube):
        with pytest.raises(ValueError, match="contiguous"):
            record(ids, load, l2p, counts)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_launch_accumulates_every_replay_in_the_shards():
    l2p, counts = build_map(LAYOUT, NUM_LOGICAL, "cuda")
    buffer, load = guarded_shards(64, "cuda")
    ids = torch.zeros(4096, TOP_K, dtype=torch.int32, device="cuda")
    flag = torch.tensor(True, device="cuda")

    def step():
        return eplb_map_and_record_triton(ids, load, l2p, counts, flag)

    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(2):  # compile, then a direct launch, before capture
            step()
    torch.cuda.synchronize()
    buffer.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    expected = torch.zeros(NUM_PHYSICAL, dtype=torch.long)
    for seed in range(4):
        ids.copy_(topk_routing(4096, NUM_LOGICAL, TOP_K, seed=seed))
        graph.replay()
        torch.cuda.synchronize()
        expected += counted(out)
    assert torch.equal(load.cpu().long().sum(0), expected)
    assert guards_untouched(buffer)
