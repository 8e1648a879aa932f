# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The map+record launcher's direct launch: every call of a layer maps and
counts as the int64 torch reference says, whichever launch it takes; the
direct launch is taken only on the Triton releases it was verified on
(elsewhere every call is a regular launch); repeat calls of one variant
launch directly, launch hooks force the regular launch, and a captured
CUDA graph replays the direct launch exactly.

Runs on a GPU, or on CPU tensors under TRITON_INTERPRET=1 (where every
launch is a regular one)."""

import pytest
import torch

import vllm.model_executor.layers.fused_moe.router.base_router as base_router
from tests.kernels.moe.eplb_router_entry import (
    DEVICES,
    cuda_alike_entry_point,
    uneven_map,
)
from tests.kernels.moe.test_eplb_relaxed_record import expected
from vllm.triton_utils import triton

CUDA = [d for d in DEVICES if d == "cuda"]


@pytest.fixture
def map_and_record(monkeypatch):
    yield from cuda_alike_entry_point(monkeypatch)


class CountingLaunches:
    """Stands in for the kernel: counts its regular launches, passes them on."""

    def __init__(self, kernel) -> None:
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]


def count_launches(monkeypatch) -> CountingLaunches:
    counting = CountingLaunches(base_router._eplb_map_and_record_i32_kernel)
    monkeypatch.setattr(base_router, "_eplb_map_and_record_i32_kernel", counting)
    return counting


class Layer:
    """One MoE layer's EPLB tensors, the same on every call."""

    def __init__(self, device: str, num_shards: int = 4) -> None:
        gen = torch.Generator().manual_seed(num_shards)
        self.l2p, self.replicas, self.num_physical = uneven_map(12, gen, device)
        self.load = torch.zeros(
            num_shards, self.num_physical, dtype=torch.int32, device=device
        )
        self.flag = torch.ones((), dtype=torch.bool, device=device)
        self.device = device

    def check_call(self, map_and_record, ids, real_tokens=None):
        """One call; asserts its ids and the load it added."""
        before = self.load.sum(0).cpu().long()
        unpadded = None
        if real_tokens is not None:
            unpadded = torch.tensor(real_tokens, dtype=torch.int32, device=self.device)
        out = map_and_record(
            ids.to(self.device), self.load, self.l2p, self.replicas, self.flag, unpadded
        )
        want = expected(ids, self.l2p, self.replicas)
        assert out.dtype == ids.dtype
        assert torch.equal(out.cpu().long(), want)
        counted = want[: len(ids) if real_tokens is None else real_tokens].flatten()
        counted = counted[counted >= 0]
        added = self.load.sum(0).cpu().long() - before
        assert torch.equal(added, torch.bincount(counted, minlength=self.num_physical))


def varied_calls(seed: int):
    """Ids of several sizes and dtypes, with and without an unpadded count."""
    gen = torch.Generator().manual_seed(seed)
    for index, num_tokens in enumerate([1, 7, 64, 300, 1, 300, 64, 7] * 2):
        ids = torch.randint(-1, 13, (num_tokens, 4), generator=gen)
        ids = ids.to(torch.int64 if index % 3 == 0 else torch.int32)
        yield ids, (None if index % 2 else max(1, num_tokens - 3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("verified", [True, False])
def test_every_call_maps_and_counts_exactly(
    map_and_record, device, verified, monkeypatch
):
    monkeypatch.setattr(base_router, "_direct_launch_verified", lambda: verified)
    layer = Layer(device)
    for ids, real_tokens in varied_calls(seed=1):
        layer.check_call(map_and_record, ids, real_tokens)


@pytest.mark.parametrize("device", DEVICES)
def test_an_unverified_triton_launches_regularly_every_call(
    map_and_record, device, monkeypatch
):
    monkeypatch.setattr(base_router, "_direct_launch_verified", lambda: False)
    counting = count_launches(monkeypatch)
    layer = Layer(device)
    ids = torch.randint(0, 12, (40, 4), dtype=torch.int32)
    for _ in range(5):
        layer.check_call(map_and_record, ids, real_tokens=33)
    assert counting.launches == 5


@pytest.mark.parametrize("device", CUDA)
def test_repeat_calls_launch_directly_unless_hooks_are_installed(
    map_and_record, device, monkeypatch
):
    monkeypatch.setattr(base_router, "_direct_launch_verified", lambda: True)
    counting = count_launches(monkeypatch)
    layer = Layer(device)
    ids = torch.randint(0, 12, (40, 4), dtype=torch.int32)
    for _ in range(5):
        layer.check_call(map_and_record, ids, real_tokens=33)
    assert counting.launches == 1  # the first call compiles the variant
    layer.check_call(map_and_record, ids.long())  # another variant
    assert counting.launches == 2
    hooks = []
    monkeypatch.setattr(triton.knobs.runtime, "launch_enter_hook", hooks.append)
    layer.check_call(map_and_record, ids, real_tokens=33)
    assert counting.launches == 3 and len(hooks) == 1


@pytest.mark.parametrize("device", CUDA)
def test_a_captured_graph_replays_the_direct_launch(
    map_and_record, device, monkeypatch
):
    monkeypatch.setattr(base_router, "_direct_launch_verified", lambda: True)
    layer = Layer(device)
    ids = torch.randint(0, 12, (300, 4), dtype=torch.int32)
    for _ in range(2):  # compile, then launch directly
        layer.check_call(map_and_record, ids)
    cuda_ids = ids.to(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = map_and_record(
            cuda_ids, layer.load, layer.l2p, layer.replicas, layer.flag
        )
    want = expected(ids, layer.l2p, layer.replicas)
    per_call = torch.bincount(
        want.flatten()[want.flatten() >= 0], minlength=layer.num_physical
    )
    layer.load.zero_()
    for replay in range(1, 4):
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out.cpu().long(), want)
        assert torch.equal(layer.load.sum(0).cpu().long(), replay * per_call)
