# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The fused EPLB map+record kernel against what PR #36261 guarantees.

Runs on the GPU, and on CPU tensors under Triton's interpreter
(TRITON_INTERPRET=1; on a machine without a GPU driver also set
CUDA_VISIBLE_DEVICES to an empty string so that vLLM keeps Triton enabled).
Every valid id must map to one of its expert's replicas (exactly, where it
has one), every invalid id to -1, and the load must grow by exactly the
bincount of the physical ids. Which replica an id takes is left to the
replica rule, which has its own tests.
"""

import zlib

import pytest
import torch

from tests.kernels.moe.eplb_utils import (
    CORRUPT_PHYSICAL_IDS,
    TopkRouter,
    build_map,
    check_counted_inside_row,
    check_map_and_record,
    corrupt_map,
    guarded_load,
    kernel_devices,
    physical_layout,
)
from vllm.distributed.eplb.eplb_state import EplbLayerState
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

DEVICES = kernel_devices()


def run_and_check(topk_ids, load, l2p, counts, record: bool) -> torch.Tensor:
    before = load.clone()
    flag = torch.tensor(record, dtype=torch.bool, device=load.device)
    out = eplb_map_and_record_triton(topk_ids, load, l2p, counts, flag)
    assert out.dtype == topk_ids.dtype
    assert out.shape == topk_ids.shape
    assert out.device == topk_ids.device
    check_map_and_record(topk_ids, out, l2p, counts, before, load, record)
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
    run_and_check(
        topk_ids.to(torch.int32).to(device), load.to(device), l2p, counts, record
    )


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
def test_random_maps(device: str, case, record: bool):
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
    run_and_check(topk_ids.to(dtype).to(device), load.to(device), l2p, counts, record)


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
    out = run_and_check(ids, load, l2p, counts, record=True)
    invalid = torch.tensor([[1, 1], [1, 0], [1, 0], [1, 0]], dtype=torch.bool)
    assert (out.cpu()[invalid] == -1).all()
    assert int(load.sum()) == 3  # only the three valid ids


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", CORRUPT_PHYSICAL_IDS)
def test_corrupt_map_counts_only_inside_the_load_row(device: str, kind: str):
    # The load row is a view into a larger buffer (as each layer's row of
    # vLLM's load tensor is): physical ids past the row must not be counted
    # into whatever lies next to it.
    num_logical, num_physical, top_k = 12, 18, 4
    l2p, counts, bad = corrupt_map(kind, num_logical, num_physical, device)
    ids = torch.arange(48 * top_k, dtype=torch.int32) % num_logical
    ids = ids.reshape(-1, top_k).to(device)
    buffer, row = guarded_load(num_physical, device)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(ids, row, l2p, counts, flag)
    # The kernel returns what the map holds; only the counting is bounded.
    assert (out.cpu() == bad).any()
    check_counted_inside_row(buffer, row, out)


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
    out = run_and_check(ids, load, l2p, counts, record=True)
    assert out.cpu()[:, 0].tolist() == [2, 2, 2]


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_ids(device: str):
    gen = torch.Generator().manual_seed(7)
    l2p, counts = build_map(list(range(16)) + list(range(8)), 16, device)
    wide = torch.randint(0, 16, (40, 16), generator=gen, dtype=torch.int32).to(device)
    for ids in (wide[:, ::2], wide.t()[:8]):
        assert not ids.is_contiguous()
        load = torch.zeros(24, dtype=torch.int32, device=device)
        run_and_check(ids, load, l2p, counts, record=True)


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
