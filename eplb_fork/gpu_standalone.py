"""Run the fork's kernel tests and benchmark where vLLM cannot be imported (the GPU machine:
torch and Triton, no vLLM; vLLM's fused_moe calls compiled ops at import).

As a pytest plugin (`-p eplb_fork.gpu_standalone`, with `EPLB_FORK` pointing
at a fork tree), it registers just enough of the `vllm` package for the
router module to import: the real `base_router.py` and the real
`EplbLayerState` class from the fork's files, and stand-ins for the platform,
the Triton shim and the router's abstract base; and the fork's
`DefaultMoERunner` (with `eplb_counted_rows`), on stand-ins for vLLM's envs
and process groups. The kernel and its launcher under test are the fork's own
source, byte for byte.

The same registration serves the current line's router (vLLM 0.25-0.34),
which also reads the micro-batch id, and from 0.34 imports vLLM's envs, its
forward context and the fork's `eplb_triton.py` (loaded as it is).

As a command, `python -m eplb_fork.gpu_standalone SCRIPT [ARGS]` registers the
same and runs SCRIPT (the benchmark) as __main__.

`make test-standalone` runs both on CPU, next to the installed fork
(eplb_fork/fork_venv_tests).
"""

from __future__ import annotations

import ast
import enum
import importlib.util
import os
import sys
import types
from abc import ABC
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from eplb_fork.fork_files import BASE_ROUTER, DEFAULT_MOE_RUNNER, EPLB_STATE, EPLB_TRITON


def _module(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # importable as a package
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _class_from_source(path: Path, class_name: str, namespace: dict) -> type:
    """Exec one class definition of a fork file, nothing else of it."""
    tree = ast.parse(path.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    exec(compile(ast.Module([node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[class_name]


def _flag(value: str) -> bool:
    return bool(int(value))


class _Envs:
    """vLLM's envs module for the runner: each knob the fork's files read, taken
    from the environment as vllm/envs.py parses it, else vLLM's default."""

    KNOBS: dict[str, tuple[Callable[[str], object], str]] = {
        "VLLM_DISABLE_SHARED_EXPERTS_STREAM": (_flag, "0"),
        "VLLM_ENABLE_MOE_DP_CHUNK": (_flag, "1"),
        "VLLM_SHARED_EXPERTS_STREAM_TOKEN_THRESHOLD": (int, "256"),
        # 0.34's router asks it (its padding mask) only with a forward context.
        "VLLM_MOE_SKIP_PADDING": (_flag, "1"),
    }

    def __getattr__(self, name: str) -> object:
        if name not in self.KNOBS:
            raise AttributeError(
                f"gpu_standalone's envs has no {name}: add it to _Envs.KNOBS "
                "with vllm/envs.py's parsing and default"
            )
        parse, default = self.KNOBS[name]
        return parse(os.environ.get(name, default))


class _NoAnnotations(ast.NodeTransformer):
    """Annotations name vLLM types; the runner runs without them."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node


def _runner_from_source(path: Path) -> types.ModuleType:
    """The fork's DefaultMoERunner class (and `eplb_counted_rows`, once the
    series has it), annotations stripped, on stand-ins for what its module
    imports; the process-group, forward-context and micro-batch getters
    raise until a test sets them."""
    tree = ast.parse(path.read_text())
    wanted = {"DefaultMoERunner", "eplb_counted_rows"}
    nodes = [
        _NoAnnotations().visit(n)
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in wanted
    ]

    def not_standalone(*args: object) -> None:
        raise RuntimeError("stand-in: the test sets this")

    module = _module("vllm.model_executor.layers.fused_moe.runner.default_moe_runner")
    module.__dict__.update(
        torch=torch,
        F=torch.nn.functional,
        nullcontext=nullcontext,
        envs=_Envs(),
        current_platform=_Platform(),
        current_stream=torch.cuda.current_stream,
        cdiv=lambda a, b: -(a // -b),
        MoERunner=ABC,
        **dict.fromkeys(
            [
                "get_forward_context",
                "get_dp_group",
                "get_ep_group",
                "get_pcp_group",
                "get_tensor_model_parallel_rank",
                "dbo_current_ubatch_id",
                "tensor_model_parallel_all_reduce",
            ],
            not_standalone,
        ),
    )
    code = ast.fix_missing_locations(ast.Module(nodes, type_ignores=[]))
    exec(compile(code, str(path), "exec"), module.__dict__)
    return module


class _Platform:
    """vLLM's `current_platform` as vLLM detects it on the machine: CUDA where
    torch sees a GPU, else no platform (every `is_*` false), as on a CPU box
    with vLLM's CUDA build; what the fork's files ask of it."""

    simple_compile_backend = "inductor"  # what v0.19.1's compiled function asks for

    def is_cuda_alike(self) -> bool:
        return torch.cuda.is_available()

    def is_cuda(self) -> bool:
        return torch.cuda.is_available()

    def is_cpu(self) -> bool:
        return False

    def is_tpu(self) -> bool:
        return False

    def is_xpu(self) -> bool:
        return False


class RoutingMethodType(enum.IntEnum):
    FUSED_TOPK = 0


class FusedMoERouter(ABC):  # noqa: B024 - stands in for the real abstract base
    pass


def _load(name: str, path: Path) -> types.ModuleType:
    """A fork file imported as module `name`, byte for byte."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def install(fork: Path) -> types.ModuleType:
    """Register the stand-ins and import the fork's base_router.py."""
    if "vllm.model_executor.layers.fused_moe.router.base_router" in sys.modules:
        return sys.modules["vllm.model_executor.layers.fused_moe.router.base_router"]
    import triton
    import triton.language as tl

    for name in [
        "vllm",
        "vllm.distributed",
        "vllm.distributed.eplb",
        "vllm.model_executor",
        "vllm.model_executor.layers",
        "vllm.model_executor.layers.fused_moe",
        "vllm.model_executor.layers.fused_moe.router",
        "vllm.model_executor.layers.fused_moe.runner",
    ]:
        _module(name)
    _module("vllm.platforms", current_platform=_Platform())
    # The current line's router reads the micro-batch id (DBO); kernels run
    # one batch at a time here.
    for name in ("vllm.v1", "vllm.v1.worker"):
        _module(name)
    _module("vllm.v1.worker.ubatching", dbo_current_ubatch_id=lambda: 0)
    _module("vllm.triton_utils", triton=triton, tl=tl)
    # 0.34's router: its envs and forward context (none: no padding mask).
    sys.modules["vllm"].envs = _Envs()
    sys.modules["vllm.envs"] = sys.modules["vllm"].envs  # type: ignore[assignment]
    _module(
        "vllm.forward_context",
        get_forward_context=None,
        is_forward_context_available=lambda: False,
    )
    if (fork / EPLB_TRITON).exists():
        _load("vllm.model_executor.layers.fused_moe.eplb_triton", fork / EPLB_TRITON)
    layer_state = _class_from_source(
        fork / EPLB_STATE, "EplbLayerState", {"dataclass": dataclass, "torch": torch}
    )
    _module("vllm.distributed.eplb.eplb_state", EplbLayerState=layer_state)
    _module("vllm.model_executor.layers.fused_moe.config", RoutingMethodType=RoutingMethodType)
    _module(
        "vllm.model_executor.layers.fused_moe.router.fused_moe_router",
        FusedMoERouter=FusedMoERouter,
    )
    module = _load("vllm.model_executor.layers.fused_moe.router.base_router", fork / BASE_ROUTER)
    if (fork / DEFAULT_MOE_RUNNER).exists():
        _runner_from_source(fork / DEFAULT_MOE_RUNNER)
    return module


def pytest_configure(config) -> None:
    install(Path(os.environ.get("EPLB_FORK", "build/fork")).resolve())


if __name__ == "__main__":
    import runpy

    install(Path(os.environ.get("EPLB_FORK", "build/fork")).resolve())
    script, *sys.argv[1:] = sys.argv[1:]
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")
