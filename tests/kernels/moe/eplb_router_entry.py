# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The router's map+record entry point for the EPLB kernel tests, on a GPU
or on CPU tensors under TRITON_INTERPRET=1, and the expert maps they
route through."""

import os

import torch

import vllm.model_executor.layers.fused_moe.router.base_router as base_router
from vllm.platforms import current_platform

if torch.cuda.is_available():
    DEVICES = ["cuda"]
elif os.environ.get("TRITON_INTERPRET") == "1":
    DEVICES = ["cpu"]
else:
    raise RuntimeError("needs a GPU, or TRITON_INTERPRET=1 for CPU tensors")


def cuda_alike_entry_point(monkeypatch):
    """Yields the router's entry point. The module defines its kernel only on
    CUDA-alike and XPU platforms: on a CPU box it is run again as on one,
    and again as it was afterwards."""
    if current_platform.is_cuda_alike():
        yield base_router.eplb_map_to_physical_and_record
        return
    rerun = base_router.__spec__.loader.exec_module
    monkeypatch.setattr(type(current_platform), "is_cuda_alike", lambda self: True)
    rerun(base_router)
    yield base_router.eplb_map_to_physical_and_record
    monkeypatch.undo()
    rerun(base_router)


def uneven_map(num_logical: int, gen: torch.Generator, device: str):
    """Each logical expert gets 1-4 replicas at shuffled physical ids; the
    map's width is upstream's (1024 slots, -1 past the replicas)."""
    replicas = torch.randint(1, 5, (num_logical,), generator=gen)
    physical = torch.randperm(int(replicas.sum()), generator=gen)
    l2p = torch.full((num_logical, 1024), -1, dtype=torch.int64)
    start = 0
    for logical, count in enumerate(replicas.tolist()):
        l2p[logical, :count] = physical[start : start + count]
        start += count
    return l2p.to(device), replicas.to(device), start
