# SPDX-License-Identifier: Apache-2.0
"""Harness only: with EPLB_ONE_GPU_LIFT=1 on the path of every process the
harness starts (PYTHONPATH), lift vLLM's one-GPU EPLB check as soon as
vllm.config.parallel is imported (see one_gpu_lift.py)."""

import importlib.abc
import os
import sys

TARGET = "vllm.config.parallel"


class _LiftAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            sys.meta_path.remove(self)
            import one_gpu_lift

            one_gpu_lift.lift()

        loader.exec_module = exec_module
        return spec


if os.environ.get("EPLB_ONE_GPU_LIFT") == "1":
    sys.meta_path.insert(0, _LiftAfterImport())
