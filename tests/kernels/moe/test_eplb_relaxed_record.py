# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The EPLB map+record kernel with 32-bit replica math and relaxed atomics:
every id takes the replica of the high-bits Knuth rule computed here in
int64 torch, ids outside [0, num_logical) map to -1, and the load grows by
the bincount of the unpadded rows' physical ids (nothing when recording is
off). Token indices run past 2**16, so the hash's product wraps past 2**32.

Runs on a GPU, or on CPU tensors under TRITON_INTERPRET=1."""

import pytest
import torch

from tests.kernels.moe.eplb_router_entry import (
    DEVICES,
    cuda_alike_entry_point,
    uneven_map,
)
from tests.kernels.moe.test_eplb_replica_high_bits import high_bits_replica


@pytest.fixture
def map_and_record(monkeypatch):
    yield from cuda_alike_entry_point(monkeypatch)


def expected(ids: torch.Tensor, l2p: torch.Tensor, replicas: torch.Tensor):
    """The physical id of each (token, slot) by the Knuth rule's high bits,
    in int64."""
    ids = ids.cpu().long()
    l2p, replicas = l2p.cpu(), replicas.cpu().long()
    valid = (ids >= 0) & (ids < l2p.shape[0])
    rows = torch.where(valid, ids, 0)
    tokens = torch.arange(ids.shape[0]).unsqueeze(-1).expand_as(ids)
    replica = high_bits_replica(tokens, replicas[rows].clamp(min=1))
    return torch.where(valid, l2p[rows, replica], -1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("record", [True, False])
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
def test_replica_rule_and_counts(map_and_record, device, record, ids_dtype):
    gen = torch.Generator().manual_seed(7)
    l2p, replicas, num_physical = uneven_map(24, gen, device)
    # 70000 tokens, top-2: token indices past 2**16, invalid ids mixed in.
    ids = torch.randint(-2, 26, (70_000, 2), generator=gen).to(ids_dtype)
    real_tokens = 65_000  # the rest is batch padding
    load = torch.zeros(num_physical, dtype=torch.int32, device=device)
    out = map_and_record(
        ids.to(device),
        load,
        l2p,
        replicas,
        torch.tensor(record, device=device),
        torch.tensor(real_tokens, dtype=torch.int32, device=device),
    )
    want = expected(ids, l2p, replicas)
    assert out.dtype == ids.dtype
    assert torch.equal(out.cpu().long(), want)
    counted = want[:real_tokens].flatten()
    counted = counted[counted >= 0]
    want_load = (
        torch.bincount(counted, minlength=num_physical) if record else 0 * load.cpu()
    )
    assert torch.equal(load.cpu().long(), want_load.long())
