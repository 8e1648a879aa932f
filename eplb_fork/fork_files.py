"""The fork files that the GPU machine loads without vLLM, at their fork
paths: gpu_bundle.py copies them, gpu_standalone.py loads them. No torch
here, so that the engine (which has none) can ask too."""

ROUTER = "vllm/model_executor/layers/fused_moe/router/base_router.py"
# From vLLM 0.34 the router's kernel calls the map and record shared here.
EPLB_TRITON = "vllm/model_executor/layers/fused_moe/eplb_triton.py"
MOE_RUNNER = "vllm/model_executor/layers/fused_moe/runner/default_moe_runner.py"
EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"
