"""Where upstream keeps what the current line edits, from 0.25.0 on.

The line's patches ask here instead of naming files and functions each:
one name per thing, and the one place that knows how releases differ.
Each question is answered by the tree itself (what it defines), not by its
version, so a fork that backported part of a later release gets the edits
that fit its code.
"""

from dataclasses import dataclass

from eplb_fork.codemod import PythonFile, Shape, assigns, call_statement

# The files the line edits (re-exported for its patches, which ask here only;
# from 0.34.0 EPLB_TRITON holds the replica math and the recording that the
# router's kernel and the MegaMoE prepare kernel call).
from eplb_fork.fork_files import BASE_ROUTER as BASE_ROUTER
from eplb_fork.fork_files import ELASTIC_EXECUTE as ELASTIC_EXECUTE
from eplb_fork.fork_files import EPLB_STATE as EPLB_STATE
from eplb_fork.fork_files import EPLB_TRITON as EPLB_TRITON
from eplb_fork.fork_files import MODEL_RUNNER as MODEL_RUNNER
from eplb_fork.fork_files import MOE_RUNNER as MOE_RUNNER

# The second model runner (VLLM_USE_V2_MODEL_RUNNER) and its EPLB controller.
MODEL_RUNNER_V2 = "vllm/v1/worker/gpu/model_runner.py"
EPLB_CONTROLLER = "vllm/v1/worker/gpu/eplb_utils.py"

KERNEL = "_eplb_map_and_record_i32_kernel"
LAUNCHER = "_eplb_map_and_record_triton"
ENTRY = "eplb_map_to_physical_and_record"
SHARED_MAP = "eplb_map_and_record"
# Elastic EP resizes the pass here up to 0.29; from 0.30 it asks EplbState.
ELASTIC_SWITCH = "ElasticEPScalingExecutor.switch_and_prepare"
RESIZE = "EplbState.reconfigure_physical_expert_slots"


@dataclass(frozen=True)
class PassResize:
    """Where elastic EP gives a model's expert_load_pass its new width: the
    file and function, what that code calls the EplbState and the model's
    state, and the statement after which the pass has its new layout (its
    old one is read from `old_num_physical_experts` on)."""

    path: str
    function: str
    eplb_state: str
    model_state: str
    resized: Shape


def shared_map(tree) -> bool:
    """Whether the map and the recording are upstream's shared Triton
    function (0.34.0 on) rather than the router kernel's own statements."""
    return tree.exists(EPLB_TRITON)


def map_site(tree) -> tuple[str, str]:
    """The file and function that pick each id's replica and count it."""
    return (EPLB_TRITON, SHARED_MAP) if shared_map(tree) else (BASE_ROUTER, KERNEL)


def pass_resize(tree) -> PassResize:
    """EplbState resizes the pass itself from 0.30; up to 0.29 the scaling
    executor pads or slices it, then hands the shared tensors out again."""
    if PythonFile(tree, EPLB_STATE).defines(RESIZE):
        resized = assigns("model_state.expert_load_pass")
        return PassResize(EPLB_STATE, RESIZE, "self", "model_state", resized)
    handed = call_statement("eplb_state._propagate_shared_tensors")
    return PassResize(ELASTIC_EXECUTE, ELASTIC_SWITCH, "eplb_state", "eplb_model_state", handed)


def router_layer_state(tree) -> str:
    """How the router's EPLB methods name the layer state: a local
    `eplb_state` from 0.24 (the router holds None without EPLB), its
    attribute before (0.20-0.23 hold a state and an `enable_eplb` flag)."""
    router = PythonFile(tree, BASE_ROUTER)
    binds = router.has_statement("BaseRouter._apply_eplb_mapping", assigns("eplb_state"))
    return "eplb_state" if binds else "self.eplb_state"
