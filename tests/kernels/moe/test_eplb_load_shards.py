# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EPLB map+record counting into [num_shards, num_physical] copies of a
layer's load row: the copies sum to the bincount of the unpadded rows'
physical ids, a 1-D row still counts as before, and nothing is written
outside the copies whatever the map holds.

Runs on a GPU, or on CPU tensors under TRITON_INTERPRET=1."""

import pytest
import torch

from tests.kernels.moe.eplb_router_entry import (
    DEVICES,
    cuda_alike_entry_point,
    uneven_map,
)
from tests.kernels.moe.test_eplb_relaxed_record import expected

GUARD = 64  # int32 cells on each side of the shards


@pytest.fixture
def map_and_record(monkeypatch):
    yield from cuda_alike_entry_point(monkeypatch)


def guarded(num_shards: int | None, num_physical: int, device: str):
    """A contiguous [num_shards, num_physical] view ([num_physical] for None)
    into a zeroed buffer with GUARD cells before and after it."""
    rows = 1 if num_shards is None else num_shards
    buffer = torch.zeros(rows * num_physical + 2 * GUARD, dtype=torch.int32)
    buffer = buffer.to(device)
    load = buffer[GUARD : GUARD + rows * num_physical]
    if num_shards is not None:
        load = load.view(num_shards, num_physical)
    return buffer, load


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_shards", [None, 1, 3, 64])
@pytest.mark.parametrize("num_tokens,real_tokens", [(1, 1), (300, 257), (5000, 4097)])
def test_shards_sum_to_the_bincount(
    map_and_record, device, num_shards, num_tokens, real_tokens
):
    gen = torch.Generator().manual_seed(num_tokens)
    l2p, replicas, num_physical = uneven_map(16, gen, device)
    ids = torch.randint(-1, 17, (num_tokens, 4), generator=gen, dtype=torch.int32)
    buffer, load = guarded(num_shards, num_physical, device)
    out = map_and_record(
        ids.to(device),
        load,
        l2p,
        replicas,
        torch.tensor(True, device=device),
        torch.tensor(real_tokens, dtype=torch.int32, device=device),
    )
    want = expected(ids, l2p, replicas)
    assert torch.equal(out.cpu().long(), want)
    counted = want[:real_tokens].flatten()
    counted = counted[counted >= 0]
    total = load.cpu().long() if num_shards is None else load.cpu().long().sum(0)
    assert torch.equal(total, torch.bincount(counted, minlength=num_physical))
    if num_shards is not None and num_shards > 1 and num_tokens * 4 > 256:
        assert (load.cpu() != 0).sum(1).gt(0).sum() > 1  # programs spread out
    assert not buffer[:GUARD].any() and not buffer[-GUARD:].any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad_id", ["at_end", "past_end", "int32_max", "negative"])
def test_a_corrupt_map_counts_only_inside_the_shards(map_and_record, device, bad_id):
    gen = torch.Generator().manual_seed(1)
    l2p, replicas, num_physical = uneven_map(8, gen, device)
    value = {
        "at_end": num_physical,
        "past_end": num_physical + 5,
        "int32_max": 2**31 - 1,
        "negative": -7,
    }[bad_id]
    l2p[3, : int(replicas[3])] = value
    buffer, load = guarded(4, num_physical, device)
    ids = torch.randint(0, 8, (600, 2), generator=gen, dtype=torch.int32)
    out = map_and_record(
        ids.to(device), load, l2p, replicas, torch.tensor(True, device=device)
    )
    mapped = out.cpu().long().flatten()
    inside = mapped[(mapped >= 0) & (mapped < num_physical)]
    assert torch.equal(
        load.cpu().long().sum(0), torch.bincount(inside, minlength=num_physical)
    )
    assert not buffer[:GUARD].any() and not buffer[-GUARD:].any()
