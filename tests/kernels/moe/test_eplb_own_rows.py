# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EPLB load under a DP gather before routing: each EP rank counts only its
own block of the gathered batch, and within it only its real tokens. The
router's map+record runs on a gathered batch of three DP ranks (blocks of 8
rows; 5, 7 and 3 real tokens) as each rank would (MoERunner's side:
tests/distributed/eplb/test_eplb_gathered_rows.py). Runs on a GPU, or on
CPU tensors under TRITON_INTERPRET=1."""

import pytest
import torch

from tests.kernels.moe.eplb_router_entry import (
    DEVICES,
    cuda_alike_entry_point,
    uneven_map,
)
from tests.kernels.moe.test_eplb_relaxed_record import expected

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
