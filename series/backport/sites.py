"""Where the backport's base (vLLM 0.19, and the releases before it) keeps
what the backport line edits: one name per file and function, asked by
every patch of the line. The files the current line edits too come from
series/shared/sites.py.
"""

# The files both lines edit (re-exported for the line's patches, which ask
# here only).
from series.shared.sites import BASE_ROUTER as BASE_ROUTER
from series.shared.sites import ELASTIC_EXECUTE as ELASTIC_EXECUTE
from series.shared.sites import EPLB_STATE as EPLB_STATE

MODEL_RUNNER = "vllm/v1/worker/gpu_model_runner.py"
MOE_RUNNER = "vllm/model_executor/layers/fused_moe/runner/default_moe_runner.py"

# What patch 3 (PR #36261) names them: the fused kernel, the launcher that
# picks its grid, and the entry point the router calls.
KERNEL = "_eplb_map_and_record_kernel"
LAUNCHER = "eplb_map_and_record_triton"
PASS_THROUGH = "eplb_map_to_physical_and_record"
