# SPDX-License-Identifier: Apache-2.0
"""Harness only, never in the fork: let EPLB run on one GPU.

vLLM refuses `enable_eplb` unless tensor, (prefill-context) or data
parallelism is above one: its EP group would be a single rank. To measure
what EPLB costs a rank (recording, mapping, rearranging with weights moved
within the GPU) on a machine with one GPU, this wraps ParallelConfig's
model validator so that, for a one-rank EPLB config, the original runs with
EPLB hidden (enable_eplb False, no redundant experts) and the two are put
back after. Every other check runs as it is; enable_expert_parallel is still
required. Pydantic holds the validator's function in the class's schema,
so the schema is rebuilt. Every number this made is labelled "one GPU,
check lifted".

Imported by sitecustomize.py (beside this file) in every process the
harness starts when EPLB_ONE_GPU_LIFT=1, so the engine core of `vllm serve`
gets it too.
"""

import pydantic.dataclasses


def lift() -> None:
    from vllm.config import parallel

    cls = parallel.ParallelConfig
    decorator = cls.__pydantic_decorators__.model_validators["_validate_parallel_config"]
    original = decorator.func
    if getattr(original, "one_gpu_lift", False):
        return

    def lifted(self):
        ranks = self.tensor_parallel_size * self.data_parallel_size
        ranks *= getattr(self, "prefill_context_parallel_size", 1)
        if not (self.enable_eplb and ranks <= 1):
            return original(self)
        if not self.enable_expert_parallel:
            raise ValueError("enable_expert_parallel must be True to use EPLB.")
        redundant = self.eplb_config.num_redundant_experts
        object.__setattr__(self, "enable_eplb", False)
        object.__setattr__(self.eplb_config, "num_redundant_experts", 0)
        try:
            return original(self)
        finally:
            object.__setattr__(self, "enable_eplb", True)
            object.__setattr__(self.eplb_config, "num_redundant_experts", redundant)

    lifted.one_gpu_lift = True
    decorator.func = lifted
    pydantic.dataclasses.rebuild_dataclass(cls, force=True)
