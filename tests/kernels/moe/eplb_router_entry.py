# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""The router's map+record entry point for the EPLB kernel tests, on a GPU
or on CPU tensors under TRITON_INTERPRET=1."""

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
