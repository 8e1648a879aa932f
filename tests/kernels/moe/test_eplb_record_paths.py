# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Both recording paths of the map+record kernel count exactly: the per-tile
histogram and the one-atomic-per-id path kept for very large expert counts.

Whatever the path, the load added must equal the bincount of the physical
ids the kernel returns for the counted rows.
"""

import pytest
import torch

import vllm.model_executor.layers.fused_moe.router.base_router as base_router
from tests.kernels.moe.eplb_utils import (
    CORRUPT_PHYSICAL_IDS,
    build_map,
    check_counted_inside_row,
    check_map_and_record,
    corrupt_map,
    guarded_load,
    kernel_devices,
)

DEVICES = kernel_devices()


@pytest.fixture(params=["histogram", "per_id"])
def record_path(request, monkeypatch):
    if request.param == "per_id":
        monkeypatch.setattr(base_router, "MAX_HISTOGRAM_BINS", 0)
    return request.param


@pytest.mark.parametrize("device", DEVICES)
# 4100 tokens x top-8 is past the size where tiles take the histogram path.
@pytest.mark.parametrize("num_tokens", [1, 37, 300, 4100])
# (512, 4600): more physical experts than MAX_HISTOGRAM_BINS, per-id atomics.
@pytest.mark.parametrize(
    "num_logical,num_physical", [(8, 8), (64, 96), (256, 288), (512, 4600)]
)
def test_load_is_the_bincount_of_counted_ids(
    device, record_path, num_tokens, num_logical, num_physical
):
    gen = torch.Generator().manual_seed(num_tokens + num_physical)
    layout = list(range(num_logical))
    layout += torch.randint(
        0, num_logical, (num_physical - num_logical,), generator=gen
    ).tolist()
    l2p, counts = build_map(layout, num_logical, device)
    top_k = min(8, num_logical)
    ids = torch.randint(-2, num_logical + 2, (num_tokens, top_k), generator=gen)
    ids = ids.to(torch.int32).to(device)
    num_real = max(0, num_tokens - 3)
    start = torch.randint(0, 9, (num_physical,), generator=gen, dtype=torch.int32)
    load = start.clone().to(device)
    out = base_router.eplb_map_and_record_triton(
        ids,
        load,
        l2p,
        counts,
        torch.ones((), dtype=torch.bool, device=device),
        torch.tensor(num_real, device=device),
    )
    check_map_and_record(
        ids, out, l2p, counts, start, load, record=True, counted_rows=slice(num_real)
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", CORRUPT_PHYSICAL_IDS)
def test_corrupt_map_counts_only_inside_the_load_row(device, record_path, kind):
    # 4100 tokens x top-8 (past the histogram's size) into a row that is a
    # view of a larger buffer: neither the per-tile histogram's spill bin nor
    # a physical id past the row may be counted next to it.
    num_logical, num_physical = 256, 288
    l2p, counts, bad = corrupt_map(kind, num_logical, num_physical, device)
    ids = torch.arange(4100 * 8, dtype=torch.int32) % num_logical
    ids = ids.reshape(-1, 8).to(device)
    buffer, row = guarded_load(num_physical, device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = base_router.eplb_map_and_record_triton(ids, row, l2p, counts, flag)
    assert (out.cpu() == bad).any()
    check_counted_inside_row(buffer, row, out)


@pytest.mark.parametrize("device", DEVICES)
def test_flag_off_records_nothing_on_either_path(device, record_path):
    l2p = torch.arange(16, dtype=torch.int64).unsqueeze(-1).to(device)
    counts = torch.ones(16, dtype=torch.int64, device=device)
    ids = torch.randint(0, 16, (3000, 4), dtype=torch.int32).to(device)
    load = torch.zeros(16, dtype=torch.int32, device=device)
    flag = torch.zeros((), dtype=torch.bool, device=device)
    base_router.eplb_map_and_record_triton(ids, load, l2p, counts, flag)
    assert int(load.abs().sum()) == 0
