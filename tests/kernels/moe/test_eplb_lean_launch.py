# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The map+record launch: ids come out in the router's index dtype, and on
the GPU repeated launches go straight to the compiled kernel yet map and
count exactly as a pure-torch model of the kernel does (its replica rule
included), CUDA-graph capture included.

The dtype cases also run on CPU tensors under Triton's interpreter
(TRITON_INTERPRET=1), where every launch takes Triton's regular path.
"""

import pytest
import torch

import vllm.model_executor.layers.fused_moe.router.base_router as base_router
from tests.kernels.moe.eplb_utils import (
    TopkRouter,
    build_map,
    check_map_and_record,
    kernel_devices,
    physical_layout,
)
from tests.kernels.moe.test_eplb_replica_strides import replica_of_each_id
from vllm.distributed.eplb.eplb_state import EplbLayerState
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)
from vllm.triton_utils import triton

DEVICES = kernel_devices()
needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="direct launches exist only on the GPU"
)
NUM_LOGICAL = 64


def random_case(device, num_tokens, top_k, dtype, seed):
    """One partly replicated map (the same for every case, so layer shapes
    stay fixed) and ids with some invalid entries."""
    layout = physical_layout("uneven", NUM_LOGICAL, torch.Generator().manual_seed(0))
    l2p, counts = build_map(layout, NUM_LOGICAL, device)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(
        -2, NUM_LOGICAL + 2, (num_tokens, top_k), generator=gen, dtype=dtype
    )
    load = torch.zeros(len(layout), dtype=torch.int32, device=device)
    return ids.to(device), load, l2p, counts


def check_exactly(ids, out, l2p, counts, load_before, load_after, record):
    """What every map+record guarantees, and each id on the replica the
    kernel's rule gives it (test_eplb_replica_strides.py)."""
    taken = check_map_and_record(ids, out, l2p, counts, load_before, load_after, record)
    assert torch.equal(taken, replica_of_each_id(ids, counts))


def launch_and_check(ids, load, l2p, counts, flag, out_dtype=None):
    before = load.clone()
    out = eplb_map_and_record_triton(ids, load, l2p, counts, flag, out_dtype=out_dtype)
    assert out.dtype == (ids.dtype if out_dtype is None else out_dtype)
    assert out.shape == ids.shape
    check_exactly(ids, out, l2p, counts, before, load, bool(flag))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("out_dtype", [torch.int32, torch.int64, torch.int16])
@pytest.mark.parametrize("record", [True, False])
def test_output_in_the_requested_dtype(device, ids_dtype, out_dtype, record):
    ids, load, l2p, counts = random_case(device, 300, 8, ids_dtype, seed=3)
    flag = torch.tensor(record, dtype=torch.bool, device=device)
    launch_and_check(ids, load, l2p, counts, flag, out_dtype=out_dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_input_in_the_requested_dtype(device):
    ids, load, l2p, counts = random_case(device, 0, 8, torch.int32, seed=0)
    flag = torch.ones((), dtype=torch.bool, device=device)
    out = eplb_map_and_record_triton(
        ids, load, l2p, counts, flag, out_dtype=torch.int64
    )
    assert out.shape == (0, 8) and out.dtype == torch.int64
    assert int(load.abs().sum()) == 0


@pytest.mark.parametrize("device", DEVICES)
def test_router_hands_on_the_kernel_output_without_a_copy(device, monkeypatch):
    """The MoE method asks for int64 ids; routing gives int32. The ids the
    router returns are the kernel's own output, already in int64."""
    ids, load, l2p, counts = random_case(device, 40, 4, torch.int32, seed=5)
    outputs = []

    def spy(*args, **kwargs):
        outputs.append(eplb_map_and_record_triton(*args, **kwargs))
        return outputs[-1]

    # Off CUDA-alike platforms the router's entry point passes ids through.
    monkeypatch.setattr(base_router, "eplb_map_to_physical_and_record", spy)
    state = EplbLayerState(
        expert_load_view=load,
        logical_to_physical_map=l2p,
        logical_replica_count=counts,
        should_record_tensor=torch.ones((), dtype=torch.bool, device=device),
    )
    router = TopkRouter(
        top_k=4,
        global_num_experts=NUM_LOGICAL,
        eplb_state=state,
        enable_eplb=True,
        indices_type_getter=lambda: torch.int64,
    )
    logits = torch.randn(40, NUM_LOGICAL, generator=torch.Generator().manual_seed(1))
    _, routed = router.select_experts(torch.zeros(40, 4), logits.to(device))
    assert routed.dtype == torch.int64
    assert routed is outputs[-1]
    logical = torch.topk(logits, 4, dim=-1).indices
    check_exactly(logical, routed, l2p, counts, torch.zeros_like(load), load, True)


class CountingKernel:
    """Stands in for the kernel object and counts launches through Triton's
    regular path (`kernel[grid](...)`)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.regular_launches = 0

    def __getitem__(self, grid):
        self.regular_launches += 1
        return self.kernel[grid]


@pytest.fixture
def counting_kernel(monkeypatch):
    """Counts regular launches; the direct launch is on, whichever Triton
    runs the tests (the gate has its own test)."""
    kernel = CountingKernel(base_router._eplb_map_and_record_kernel)
    monkeypatch.setattr(base_router, "_eplb_map_and_record_kernel", kernel)
    monkeypatch.setattr(base_router, "_layer_launches", {})
    monkeypatch.setattr(base_router, "_direct_launch_verified", lambda: True)
    return kernel


class Layer:
    """One MoE layer's EPLB tensors, passed unchanged on every call as the
    router does; each call's ids are new."""

    def __init__(self, device):
        _, self.load, self.l2p, self.counts = random_case(device, 1, 1, torch.int32, 0)
        self.flag = torch.ones((), dtype=torch.bool, device=device)

    def check(self, ids, record: bool, out_dtype=None):
        self.flag.fill_(record)
        maps = (self.l2p, self.counts, self.flag)
        return launch_and_check(ids, self.load, *maps, out_dtype=out_dtype)


def fresh_ids(num_tokens, top_k, dtype, seed, device="cuda"):
    return random_case(device, num_tokens, top_k, dtype, seed)[0]


@pytest.mark.parametrize("device", DEVICES)
def test_replaced_layer_tensors_are_not_served_stale(device, counting_kernel):
    """A layer whose map is swapped for another tensor (another dtype, so
    another compiled kernel) must not reuse what was derived for the old one."""
    layer = Layer(device)
    ids = fresh_ids(50, 8, torch.int32, seed=21, device=device)
    layer.check(ids, record=True)
    layer.check(ids, record=True)
    layer.l2p = layer.l2p.to(torch.int32)
    layer.counts = layer.counts.to(torch.int32)
    layer.check(ids, record=True)
    layer.check(ids, record=False)


@pytest.mark.parametrize("device", DEVICES)
def test_a_non_contiguous_load_view_is_refused(device, counting_kernel):
    layer = Layer(device)
    strided = torch.zeros(2 * layer.load.numel(), dtype=torch.int32, device=device)
    ids = fresh_ids(4, 2, torch.int32, seed=1, device=device)
    with pytest.raises(ValueError, match="contiguous"):
        eplb_map_and_record_triton(
            ids, strided[::2], layer.l2p, layer.counts, layer.flag
        )
    assert counting_kernel.regular_launches == 0
    assert int(strided.abs().sum()) == 0


@needs_gpu
def test_repeated_launches_go_direct_and_stay_exact(counting_kernel):
    # Element counts Triton specializes differently (1, multiple of 16, other;
    # 37 x 4 differs from 1 x 8 in top_k, as both launch one 256-id tile),
    # a many-tile launch (4100 x 8 ids; the per-tile histogram while the
    # series has it), both id and output dtypes, and ids at an address not
    # 16-byte aligned.
    layer = Layer("cuda")
    variants = [
        (num_tokens, top_k, dtype, misaligned)
        for num_tokens, top_k in ((1, 1), (1, 8), (2, 8), (37, 4), (4100, 8))
        for dtype in (torch.int32, torch.int64)
        for misaligned in (False, True)
    ]
    for repeat in range(3):
        for index, (num_tokens, top_k, dtype, misaligned) in enumerate(variants):
            ids = fresh_ids(num_tokens, top_k, dtype, seed=100 * repeat + index)
            if misaligned:
                padded = torch.empty(ids.numel() + 1, dtype=dtype, device="cuda")
                padded[1:] = ids.flatten()
                ids = padded[1:].view(ids.shape)
                assert ids.data_ptr() % 16 != 0
            out_dtype = torch.int64 if index % 3 == 0 else None
            layer.check(ids, record=repeat != 1, out_dtype=out_dtype)
    # Aligned variants: one regular launch per compiled kernel (variants that
    # Triton specializes alike share one), then direct. Misaligned ids (a
    # specialization the cache does not track) always take the regular path.
    aligned = sum(not misaligned for *_, misaligned in variants)
    misaligned = len(variants) - aligned
    (state,) = base_router._layer_launches.values()
    assert 1 <= len(state.compiled) <= aligned
    assert counting_kernel.regular_launches == len(state.compiled) + 3 * misaligned


@pytest.mark.parametrize("device", DEVICES)
def test_an_unverified_triton_launches_regularly_every_call(
    device, counting_kernel, monkeypatch
):
    monkeypatch.setattr(base_router, "_direct_launch_verified", lambda: False)
    layer = Layer(device)
    ids = fresh_ids(64, 8, torch.int32, seed=5, device=device)
    for _ in range(4):
        layer.check(ids, record=True)
    assert counting_kernel.regular_launches == 4


@needs_gpu
def test_launch_hooks_see_every_launch(counting_kernel, monkeypatch):
    seen = []
    layer = Layer("cuda")
    ids = fresh_ids(64, 8, torch.int32, seed=9)
    layer.check(ids, record=True)
    monkeypatch.setattr(triton.knobs.runtime, "launch_enter_hook", seen.append)
    for _ in range(2):
        layer.check(ids, record=True)
    assert len(seen) == 2
    assert counting_kernel.regular_launches == 3


@needs_gpu
def test_captured_direct_launch_replays_exactly(counting_kernel):
    layer = Layer("cuda")
    ids = fresh_ids(512, 8, torch.int32, seed=11)
    args = (ids, layer.load, layer.l2p, layer.counts, layer.flag)
    eplb_map_and_record_triton(*args)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = eplb_map_and_record_triton(*args)
    assert counting_kernel.regular_launches == 1
    for seed, record in ((12, True), (13, False), (14, True)):
        ids.copy_(fresh_ids(512, 8, torch.int32, seed=seed))
        layer.flag.fill_(record)
        before = layer.load.clone()
        graph.replay()
        torch.cuda.synchronize()
        check_exactly(ids, out, layer.l2p, layer.counts, before, layer.load, record)
