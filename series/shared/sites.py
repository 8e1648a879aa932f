"""The files both lines edit, at the same paths in every release they are
for (each line's `sites` re-exports them to its patches, which ask there
only)."""

BASE_ROUTER = "vllm/model_executor/layers/fused_moe/router/base_router.py"
EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"
ELASTIC_EXECUTE = "vllm/distributed/elastic_ep/elastic_execute.py"
