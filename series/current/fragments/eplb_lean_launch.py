"""Fragment: upstream's map+record launcher (vllm/model_executor/layers/
fused_moe/router/base_router.py, from 0.31) without Triton's per-call
binding. The patch `eplb_lean_launch` of the current line puts the per-layer
launch state above the platform-guarded block and the launcher in place of
`_eplb_map_and_record_triton`; the Triton gate and the hook check are the
backport's (series/shared/fragments/eplb_lean_launch.py). The imports stand for
that file's own (the patch adds `weakref`) and for the names defined there.
"""

import weakref

import torch

from vllm.model_executor.layers.fused_moe.router.base_router import (
    _direct_launch_verified,
    _eplb_map_and_record_i32_kernel,
    _launch_hooks_installed,
)
from vllm.triton_utils import triton


class _LayerLaunch:
    """What one MoE layer's map+record calls share: the tensors its router
    passes on every call (held weakly), what they fix, and the compiled kernel
    of each launch variant, launched directly on repeat calls: Triton's
    regular launch costs more host time than the kernel takes at decode
    sizes."""

    def __init__(self, load, l2p, replicas, flag) -> None:
        tensors = (load, l2p, replicas, flag)
        self.refs = tuple(weakref.ref(t) for t in tensors)
        # Passed as they are, so Triton's specialization on 16-byte alignment
        # holds for every later call with the same tensors.
        self.direct = _direct_launch_verified() and all(
            t.is_contiguous() and t.data_ptr() % 16 == 0 for t in tensors
        )
        self.device = load.device.index
        # In the kernel's parameter order: num_logical_experts, map_slots,
        # out_size; then num_shards.
        self.shapes = (replicas.shape[0], l2p.shape[1], load.shape[-1])
        self.num_shards = 1 if load.dim() == 1 else load.shape[0]
        # Per launch variant: the compiled kernel's launcher, function and
        # metadata, and the driver's current-stream getter.
        self.compiled: dict[tuple, tuple] = {}

    def serves(self, load, l2p, replicas, flag) -> bool:
        tensors = (load, l2p, replicas, flag)
        return all(ref() is t for ref, t in zip(self.refs, tensors))


# By id() of the layer's load view; `serves` tells a reused id apart.
_layer_launches: dict[int, _LayerLaunch] = {}


def _layer_launch(load, l2p, replicas, flag) -> _LayerLaunch:
    layer = _layer_launches.get(id(load))
    if layer is None or not layer.serves(load, l2p, replicas, flag):
        if len(_layer_launches) >= 4096:  # layers whose tensors are gone
            for key in [k for k, v in _layer_launches.items() if v.refs[0]() is None]:
                del _layer_launches[key]
        layer = _LayerLaunch(load, l2p, replicas, flag)
        _layer_launches[id(load)] = layer
    return layer


def _eplb_map_and_record_triton(
    topk_ids: torch.Tensor,
    logical_to_physical_map: torch.Tensor,
    logical_replica_count: torch.Tensor,
    expert_load_view: torch.Tensor,
    record_enabled: torch.Tensor,
    num_unpadded_tokens: torch.Tensor | None,
) -> torch.Tensor:
    numel = topk_ids.numel()
    if numel == 0:
        return topk_ids
    assert expert_load_view.is_contiguous()
    load, flag = expert_load_view, record_enabled
    l2p, replicas = logical_to_physical_map, logical_replica_count
    layer = _layer_launch(load, l2p, replicas, flag)
    # The kernel reads ids in their own dtype: no int32 copy.
    ids = topk_ids.contiguous()
    out = torch.empty_like(ids)
    num_active_experts = ids.shape[-1]
    block_size = 256
    # Integer math: triton.cdiv is a JIT function, microseconds per call.
    grid = (numel + block_size - 1) // block_size
    has_unpadded = num_unpadded_tokens is not None
    # In the kernel's parameter order.
    args = (
        ids,
        replicas.contiguous(),
        l2p.contiguous(),
        out,
        load,
        flag,
        num_unpadded_tokens,
        *layer.shapes,
        numel,
        num_active_experts,
        layer.num_shards,
        has_unpadded,
        block_size,
    )
    # Beyond the layer's tensors, what Triton specializes a launch on.
    variant = (ids.dtype, numel == 1, numel % 16 == 0, num_active_experts)
    variant += (has_unpadded,)
    direct = (
        layer.direct
        and (ids.data_ptr() | out.data_ptr()) % 16 == 0
        and (not has_unpadded or num_unpadded_tokens.data_ptr() % 16 == 0)
        and numel < 2**31
    )
    launcher = layer.compiled.get(variant) if direct else None
    if launcher is not None and not _launch_hooks_installed(triton.knobs.runtime):
        run, function, metadata, current_stream = launcher
        # No launch metadata, no enter/exit hooks: none are installed.
        run(grid, 1, 1, current_stream(layer.device), function, metadata,
            None, None, None, *args)  # fmt: skip
        return out
    compiled = _eplb_map_and_record_i32_kernel[(grid,)](*args)
    # Under the interpreter every launch takes the regular path.
    if direct and all(
        hasattr(compiled, a) for a in ("run", "function", "packed_metadata")
    ):
        current_stream = triton.runtime.driver.active.get_current_stream
        launch = (compiled.run, compiled.function, compiled.packed_metadata)
        layer.compiled[variant] = (*launch, current_stream)
    return out
