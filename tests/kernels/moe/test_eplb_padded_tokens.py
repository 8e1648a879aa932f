# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Padded rows are mapped but not recorded, and the real-token count is read
on the device: one captured CUDA graph records each replay's real tokens.

The map+record rule itself is checked against a torch reference in
test_eplb_map_record.py; here a padded batch must behave exactly like its
unpadded prefix (load) and like an unrestricted call (mapping).
"""

import pytest
import torch

from tests.kernels.moe.eplb_utils import kernel_devices, redundant_map, topk_routing
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

DEVICES = kernel_devices()
NUM_LOGICAL = 12
TOP_K = 4


def routing(num_rows: int, seed: int = 0) -> torch.Tensor:
    return topk_routing(num_rows, NUM_LOGICAL, TOP_K, seed)


def run(ids, l2p, counts, num_physical, real_count=None):
    device = l2p.device
    load = torch.zeros(num_physical, dtype=torch.int32, device=device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    real = None if real_count is None else torch.tensor(real_count, device=device)
    out = eplb_map_and_record_triton(ids.to(device), load, l2p, counts, flag, real)
    return out.cpu(), load.cpu()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "num_real,num_rows", [(17, 24), (5, 8), (1, 256), (0, 8), (8, 8)]
)
def test_padded_rows_are_mapped_but_not_recorded(device, num_real, num_rows):
    l2p, counts, num_physical = redundant_map(device, NUM_LOGICAL)
    ids = routing(num_rows)
    out, load = run(ids, l2p, counts, num_physical, real_count=num_real)

    _, prefix_load = run(ids[:num_real], l2p, counts, num_physical)
    assert torch.equal(load, prefix_load)  # exactly the real tokens' load
    assert int(load.sum()) == num_real * TOP_K

    unrestricted_out, unrestricted_load = run(ids, l2p, counts, num_physical)
    assert torch.equal(out, unrestricted_out)  # mapping of every row unchanged
    assert int(unrestricted_load.sum()) == num_rows * TOP_K


@pytest.mark.parametrize("device", DEVICES)
def test_count_beyond_the_batch_records_every_row(device):
    l2p, counts, num_physical = redundant_map(device, NUM_LOGICAL)
    ids = routing(16)
    _, load = run(ids, l2p, counts, num_physical, real_count=2**62)
    _, unrestricted = run(ids, l2p, counts, num_physical)
    assert torch.equal(load, unrestricted)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_one_captured_graph_records_each_replays_real_tokens():
    l2p, counts, num_physical = redundant_map("cuda", NUM_LOGICAL)
    num_rows = 64
    ids = routing(num_rows, seed=3).cuda()
    load = torch.zeros(num_physical, dtype=torch.int32, device="cuda")
    flag = torch.ones((), dtype=torch.bool, device="cuda")
    real = torch.tensor(num_rows, device="cuda")

    eplb_map_and_record_triton(ids, load, l2p, counts, flag, real)  # compile
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = eplb_map_and_record_triton(ids, load, l2p, counts, flag, real)

    for num_real in (5, 41, 0, 64):
        load.zero_()
        real.fill_(num_real)
        graph.replay()
        torch.cuda.synchronize()
        _, expected = run(ids[:num_real], l2p, counts, num_physical)
        assert torch.equal(load.cpu(), expected), num_real
        unrestricted_out, _ = run(ids, l2p, counts, num_physical)
        assert torch.equal(out.cpu(), unrestricted_out)
