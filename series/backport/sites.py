"""Where the backport's base (vLLM 0.19, and the releases before it) keeps
what the backport line edits: one name per file and function, asked by
every patch of the line. File paths come from eplb_fork/fork_files.py.
"""

# The files the line edits (re-exported for its patches, which ask here only).
from eplb_fork.fork_files import BASE_ROUTER as BASE_ROUTER
from eplb_fork.fork_files import DEFAULT_MOE_RUNNER as DEFAULT_MOE_RUNNER
from eplb_fork.fork_files import ELASTIC_EXECUTE as ELASTIC_EXECUTE
from eplb_fork.fork_files import EPLB_STATE as EPLB_STATE
from eplb_fork.fork_files import MODEL_RUNNER as MODEL_RUNNER
from eplb_fork.fork_files import PARALLEL_CONFIG as PARALLEL_CONFIG

# What patch 3 (PR #36261) names them: the fused kernel, the launcher that
# picks its grid, and the entry point the router calls.
KERNEL = "_eplb_map_and_record_kernel"
LAUNCHER = "eplb_map_and_record_triton"
PASS_THROUGH = "eplb_map_to_physical_and_record"
# Where elastic EP resizes the load pass and hands the shared tensors out.
ELASTIC_SWITCH = "ElasticEPScalingExecutor.switch_and_prepare"
