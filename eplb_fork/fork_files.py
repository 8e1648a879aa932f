"""The fork's files that the series edits or the GPU machine loads, at their
fork paths: one name per file, asked by the patches (through their line's
`sites`), by gpu_bundle.py and gpu_standalone.py, and by the drift test. No
torch here, so that the engine (which has none) can ask too."""

BASE_ROUTER = "vllm/model_executor/layers/fused_moe/router/base_router.py"
EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"
ELASTIC_EXECUTE = "vllm/distributed/elastic_ep/elastic_execute.py"
PARALLEL_CONFIG = "vllm/config/parallel.py"
MODEL_RUNNER = "vllm/v1/worker/gpu_model_runner.py"
# From vLLM 0.34 the router's kernel calls the map and record shared here.
EPLB_TRITON = "vllm/model_executor/layers/fused_moe/eplb_triton.py"
# The MoE runner up to 0.24; from 0.25 the runner that the current line
# edits is MOE_RUNNER.
DEFAULT_MOE_RUNNER = "vllm/model_executor/layers/fused_moe/runner/default_moe_runner.py"
MOE_RUNNER = "vllm/model_executor/layers/fused_moe/runner/moe_runner.py"
