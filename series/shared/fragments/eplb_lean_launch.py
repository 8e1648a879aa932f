"""Fragment: the map+record launcher that skips Triton's per-call binding.

The patch `eplb_lean_launch` puts this code into
vllm/model_executor/layers/fused_moe/router/base_router.py: the store in the
kernel where the patch says, the per-layer launch
state before the launcher, and the launcher in place of the old one. The
imports stand for base_router.py's own (the patch adds `weakref`) and for the
names defined there.
"""

import weakref

import torch

from vllm.model_executor.layers.fused_moe.router.base_router import (
    MAX_HISTOGRAM_BINS,
    _eplb_map_and_record_kernel,
)
from vllm.triton_utils import tl, triton


def store_in_output_dtype(out_ids_ptr, offs, physical, in_range):
    tl.store(
        out_ids_ptr + offs, physical.to(out_ids_ptr.dtype.element_ty), mask=in_range
    )


def _direct_launch_verified() -> bool:
    """Whether this Triton's compiled-kernel launcher (`CompiledKernel.run(
    grid_x, grid_y, grid_z, stream, function, packed_metadata,
    launch_metadata, enter_hook, exit_hook, *args)`, an internal interface)
    is one the direct launch was verified against on an H200: 3.6 (vLLM
    0.19's torch 2.10 brings it), 3.7 (vLLM 0.31 and 0.32) and 3.8 (vLLM
    0.33). Any other release takes Triton's regular launch on every call."""
    return triton.__version__.startswith(("3.6.", "3.7.", "3.8."))


class _LayerLaunch:
    """What one MoE layer's map+record calls share: the tensors its router
    passes every step (held weakly), what they fix once, and the compiled
    kernel of each launch variant, launched directly on repeat calls:
    Triton's generic launch path costs more host time than the kernel takes
    at decode sizes."""

    def __init__(self, load, l2p, replicas, flag, real_tokens) -> None:
        if not load.is_contiguous():
            raise ValueError("expert_load_view must be contiguous: it is counted into")
        tensors = (load, l2p, replicas, flag, real_tokens)
        self.refs = tuple(None if t is None else weakref.ref(t) for t in tensors)
        # Passed as they are, so Triton's specialization on 16-byte alignment
        # holds for every later call with the same tensors.
        self.direct = _direct_launch_verified() and all(
            t.is_contiguous() and t.data_ptr() % 16 == 0
            for t in tensors
            if t is not None
        )
        self.device = load.device.index
        self.shapes = (replicas.shape[0], l2p.shape[1], load.shape[0])
        bins = triton.next_power_of_2(load.shape[0] + 1)
        self.histogram_bins = bins if bins <= MAX_HISTOGRAM_BINS else 0
        # Per launch variant: the compiled kernel's launcher, function and
        # metadata, and the driver's current-stream getter.
        self.compiled: dict[tuple, tuple] = {}

    def serves(self, load, l2p, replicas, flag, real_tokens) -> bool:
        refs = self.refs
        return (
            refs[0]() is load
            and refs[1]() is l2p
            and refs[2]() is replicas
            and refs[3]() is flag
            and (real_tokens is None if refs[4] is None else refs[4]() is real_tokens)
        )


# By id() of the layer's load view; `serves` tells a reused id apart.
_layer_launches: dict[int, _LayerLaunch] = {}


def _layer_launch(load, l2p, replicas, flag, real_tokens) -> _LayerLaunch:
    layer = _layer_launches.get(id(load))
    if layer is None or not layer.serves(load, l2p, replicas, flag, real_tokens):
        if len(_layer_launches) >= 4096:  # layers whose tensors are gone
            for key in [k for k, v in _layer_launches.items() if v.refs[0]() is None]:
                del _layer_launches[key]
        layer = _LayerLaunch(load, l2p, replicas, flag, real_tokens)
        _layer_launches[id(load)] = layer
    return layer


def _launch_hooks_installed(runtime) -> bool:
    """Launch hooks (profilers) get their metadata from the regular path.
    Newer Tritons keep a hook chain that is empty when none is installed."""
    enter, exit_ = runtime.launch_enter_hook, runtime.launch_exit_hook
    return bool(getattr(enter, "calls", enter) or getattr(exit_, "calls", exit_))


def eplb_map_and_record_triton(
    topk_ids: torch.Tensor,
    expert_load_view: torch.Tensor,
    logical_to_physical_map: torch.Tensor,
    logical_replica_count: torch.Tensor,
    record_enabled: torch.Tensor,
    real_token_count: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Map logical expert ids to physical ones and, when `record_enabled`
    (a 0-dim bool device tensor) is set, count each physical id's tokens into
    `expert_load_view` in place.

    Ids outside `[0, num_logical)` map to -1 and are not counted. The result
    has the shape of `topk_ids` and the dtype `out_dtype` (default: that of
    `topk_ids`).
    """
    out_dtype = topk_ids.dtype if out_dtype is None else out_dtype
    if topk_ids.numel() == 0:
        return topk_ids.to(out_dtype)
    layer = _layer_launch(
        expert_load_view,
        logical_to_physical_map,
        logical_replica_count,
        record_enabled,
        real_token_count,
    )
    ids = topk_ids.contiguous()
    out = torch.empty_like(ids, dtype=out_dtype)
    numel = ids.numel()
    top_k = ids.shape[-1]
    # Enough programs to fill the GPU (an H200 has 132 SMs) for the mapping, and
    # at prefill sizes tiles large enough for the histogram to fold many ids into
    # one atomic per expert; below 512 ids a tile gains nothing from it. Plain
    # integer math: triton.cdiv is a JIT function, microseconds per call.
    min_block = 512 if numel >= 32768 else 256
    per_program = triton.next_power_of_2((numel + 131) // 132)
    block_size = min(2048, max(min_block, per_program))
    bins = layer.histogram_bins if block_size >= 512 else 0
    num_warps = 16 if block_size >= 1024 else (8 if block_size >= 512 else 4)
    grid = (numel + block_size - 1) // block_size
    # In the kernel's parameter order.
    args = (
        ids,
        out,
        logical_to_physical_map.contiguous(),
        logical_replica_count.contiguous(),
        expert_load_view,
        record_enabled,
        numel,
        *layer.shapes,
        top_k,
        real_token_count,
        real_token_count is not None,
        bins,
        block_size,
    )
    # With the layer's tensors, what else Triton specializes a launch on.
    variant = (ids.dtype, out_dtype, numel == 1, numel % 16 == 0, top_k, block_size)
    direct = (
        layer.direct and (ids.data_ptr() | out.data_ptr()) % 16 == 0 and numel < 2**31
    )
    launcher = layer.compiled.get(variant) if direct else None
    if launcher is not None and not _launch_hooks_installed(triton.knobs.runtime):
        run, function, metadata, current_stream = launcher
        stream = current_stream(layer.device)
        # No launch metadata, no enter/exit hooks: none are installed.
        run(grid, 1, 1, stream, function, metadata, None, None, None, *args)
        return out
    compiled = _eplb_map_and_record_kernel[(grid,)](*args, num_warps=num_warps)
    # Under the interpreter, or on a Triton without this launcher interface,
    # every launch takes the regular path.
    if direct and all(
        hasattr(compiled, a) for a in ("run", "function", "packed_metadata")
    ):
        current_stream = triton.runtime.driver.active.get_current_stream
        launch = (compiled.run, compiled.function, compiled.packed_metadata)
        layer.compiled[variant] = (*launch, current_stream)
    return out
