# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Padded rows are mapped but never recorded as expert load.

The router maps every row of a padded batch and counts only the rows below
the real-token count it is handed (a 0-dim int32 device tensor); without a
count, or with the count a model holds until its runner publishes one,
every row counts. Expectations come from plain torch: each id lands on a
replica of its own expert (which one is the replica rule's business), and
the load is a bincount of the real rows' physical ids.

Runs on a GPU, or on CPU tensors under TRITON_INTERPRET=1."""

import pytest
import torch

from tests.kernels.moe.eplb_router_entry import (
    DEVICES,
    cuda_alike_entry_point,
    uneven_map,
)

NUM_LOGICAL = 12
TOKENS = 40
TOP_K = 4


@pytest.fixture
def map_and_record(monkeypatch):
    yield from cuda_alike_entry_point(monkeypatch)


def routing(device: str):
    """Ids (invalid ones mixed in) and a map giving each logical expert one
    to four replicas at shuffled physical ids."""
    gen = torch.Generator().manual_seed(11)
    l2p, replicas, num_physical = uneven_map(NUM_LOGICAL, gen, device)
    ids = torch.randint(-1, NUM_LOGICAL + 1, (TOKENS, TOP_K), generator=gen)
    return ids.to(torch.int32), l2p, replicas, num_physical


def check_mapped(out, ids, l2p, replicas) -> None:
    """Every valid id went to one of its expert's replicas, every other one
    to -1."""
    ids, l2p, replicas = ids.long(), l2p.cpu(), replicas.cpu()
    valid = (ids >= 0) & (ids < NUM_LOGICAL)
    assert torch.equal(out < 0, ~valid)
    rows = torch.where(valid, ids, 0)
    slots = torch.arange(l2p.shape[1])
    is_replica = (l2p[rows] == out.unsqueeze(-1)) & (
        slots < replicas[rows].unsqueeze(-1)
    )
    assert torch.equal(is_replica.any(-1), valid)


def load_of(physical_ids: torch.Tensor, num_physical: int) -> torch.Tensor:
    counted = physical_ids.flatten()
    return torch.bincount(counted[counted >= 0], minlength=num_physical)


def run(map_and_record, device, count, record=True):
    ids, l2p, replicas, num_physical = routing(device)
    load = torch.zeros(num_physical, dtype=torch.int32, device=device)
    flag = torch.tensor(record, device=device)
    out = map_and_record(ids.to(device), load, l2p, replicas, flag, count)
    # Every row is mapped, padding too: the MoE kernels still see its ids.
    out = out.cpu().long()
    check_mapped(out, ids, l2p, replicas)
    return load.cpu().long(), out, num_physical


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("real", [0, 1, 17, TOKENS - 1, TOKENS])
def test_only_rows_below_the_count_are_recorded(map_and_record, device, real):
    count = torch.tensor(real, dtype=torch.int32, device=device)
    load, out, num_physical = run(map_and_record, device, count)
    assert torch.equal(load, load_of(out[:real], num_physical))


@pytest.mark.parametrize("device", DEVICES)
def test_without_a_count_every_row_is_recorded(map_and_record, device):
    load, out, num_physical = run(map_and_record, device, None)
    assert torch.equal(load, load_of(out, num_physical))


@pytest.mark.parametrize("device", DEVICES)
def test_a_count_nobody_published_records_every_row(map_and_record, device):
    # What EplbState's counts hold until a runner publishes one (int32's
    # largest: tests/distributed/eplb/test_eplb_unpadded_counts.py).
    unpublished = torch.tensor(
        torch.iinfo(torch.int32).max, dtype=torch.int32, device=device
    )
    load, out, num_physical = run(map_and_record, device, unpublished)
    assert torch.equal(load, load_of(out, num_physical))


@pytest.mark.parametrize("device", DEVICES)
def test_nothing_is_recorded_with_the_flag_off(map_and_record, device):
    count = torch.tensor(TOKENS, dtype=torch.int32, device=device)
    load, _, _ = run(map_and_record, device, count, record=False)
    assert not load.any()
