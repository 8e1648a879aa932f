# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The map's index math in 32 bits (launches whose indices fit) and in 64
bits (the rest) gives every id the same replica, the high-bits hash rule
computed here in int64 torch, and the same counts. Token indices run past
2**16, so the hash's high bits and its wrap past 2**32 both matter."""

import pytest
import torch

from tests.kernels.moe.eplb_utils import (
    build_map,
    check_map_and_record,
    kernel_devices,
    physical_layout,
)
from tests.kernels.moe.test_eplb_replica_strides import replica_of_each_id
from vllm.model_executor.layers.fused_moe.router import base_router
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

DEVICES = kernel_devices()


def map_and_record(ids, layout, l2p, counts, device):
    load = torch.zeros(len(layout), dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(ids.to(device), load, l2p, counts, flag)
    return out, load


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
def test_both_index_widths_take_the_hash_rule_replica(device, ids_dtype, monkeypatch):
    gen = torch.Generator().manual_seed(11)
    layout = physical_layout("uneven", 24, gen)  # 1..4 replicas each
    l2p, counts = build_map(layout, 24, device)
    # 70000 tokens, top-1: token indices past 2**16, invalid ids mixed in.
    ids = torch.randint(-2, 26, (70_000, 1), generator=gen).to(ids_dtype)
    narrow_out, narrow_load = map_and_record(ids, layout, l2p, counts, device)
    # Every launch past the limit takes the 64-bit path.
    monkeypatch.setattr(base_router, "_NARROW_INDEX_LIMIT", 0)
    wide_out, wide_load = map_and_record(ids, layout, l2p, counts, device)

    before = torch.zeros(len(layout), dtype=torch.int64)
    for out, load in ((narrow_out, narrow_load), (wide_out, wide_load)):
        taken = check_map_and_record(ids, out, l2p, counts, before, load, record=True)
        assert torch.equal(taken, replica_of_each_id(ids, counts))
    assert torch.equal(narrow_out, wide_out)


@pytest.mark.parametrize("device", DEVICES)
def test_limit_decides_the_width_per_launch(device, monkeypatch):
    """A launch exactly at the limit (ids plus the last tile's overrun) is
    narrow, one id more is wide; both map alike."""
    gen = torch.Generator().manual_seed(3)
    layout = physical_layout("uneven", 8, gen)
    l2p, counts = build_map(layout, 8, device)
    ids = torch.randint(0, 8, (300, 2), generator=gen, dtype=torch.int32)
    widths = []
    kernel = base_router._eplb_map_and_record_kernel

    class Recording:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                widths.append(args[-2])  # NARROW_INDEX, before BLOCK_SIZE
                return kernel[grid](*args, **kwargs)

            return launch

    monkeypatch.setattr(base_router, "_eplb_map_and_record_kernel", Recording())
    base_router._layer_launches.clear()
    outs = []
    for limit in (600 + 256, 600 + 255):
        monkeypatch.setattr(base_router, "_NARROW_INDEX_LIMIT", limit)
        outs.append(map_and_record(ids, layout, l2p, counts, device)[0])
    assert widths == [True, False]
    assert torch.equal(outs[0], outs[1])
