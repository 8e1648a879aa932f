"""Fragment: the fused EPLB map+record Triton kernel, as PR #36261 has it.

The patch `fused_map_record_kernel` puts everything below the imports into
vllm/model_executor/layers/fused_moe/router/base_router.py in place of the
torch.compile'd function. The imports are those base_router.py has (the patch
adds the Triton one), so this file is also a module that loads on its own.
"""

import torch

from vllm.platforms import current_platform
from vllm.triton_utils import tl, triton


@triton.jit
def _eplb_map_and_record_kernel(
    topk_ids_ptr,
    out_ids_ptr,
    logical_to_physical_ptr,
    replica_count_ptr,
    expert_load_ptr,
    record_enabled_ptr,
    numel,
    num_logical,
    map_slots,
    num_physical,
    BLOCK_SIZE: tl.constexpr,
):
    # int64 address math throughout: offsets and row * map_slots may pass 2**31.
    offs = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    in_range = offs < numel
    logical = tl.load(topk_ids_ptr + offs, mask=in_range, other=-1).to(tl.int64)
    valid = in_range & (logical >= 0) & (logical < num_logical)
    # Invalid ids never take part in address math: they read row 0, masked.
    row = tl.where(valid, logical, 0)
    replicas = tl.load(replica_count_ptr + row, mask=valid, other=1)
    replicas = tl.minimum(tl.maximum(replicas, 1), map_slots)
    # The PR's replica choice: flattened (token, slot) position modulo the
    # replica count.
    replica = offs % replicas
    physical = tl.load(
        logical_to_physical_ptr + row * map_slots + replica, mask=valid, other=-1
    )
    tl.store(out_ids_ptr + offs, physical, mask=in_range)

    # The flag is read on the device, so a captured CUDA graph follows it.
    record = tl.load(record_enabled_ptr) != 0
    counted = valid & record & (physical >= 0) & (physical < num_physical)
    tl.atomic_add(expert_load_ptr + tl.where(counted, physical, 0), 1, mask=counted)


def eplb_map_and_record_triton(
    topk_ids: torch.Tensor,
    expert_load_view: torch.Tensor,
    logical_to_physical_map: torch.Tensor,
    logical_replica_count: torch.Tensor,
    record_enabled: torch.Tensor,
) -> torch.Tensor:
    """Map logical expert ids to physical ones and, when `record_enabled`
    (a 0-dim bool device tensor) is set, count each physical id's tokens into
    `expert_load_view` in place.

    Ids outside `[0, num_logical)` map to -1 and are not counted. The result
    has the dtype and shape of `topk_ids`.
    """
    if topk_ids.numel() == 0:
        return topk_ids
    # Written in place through a flat pointer.
    assert expert_load_view.is_contiguous()
    ids = topk_ids.contiguous()
    out = torch.empty_like(ids)
    numel = ids.numel()
    block_size = 256
    _eplb_map_and_record_kernel[(triton.cdiv(numel, block_size),)](
        ids,
        out,
        logical_to_physical_map.contiguous(),
        logical_replica_count.contiguous(),
        expert_load_view,
        record_enabled,
        numel,
        logical_replica_count.shape[0],
        logical_to_physical_map.shape[1],
        expert_load_view.shape[0],
        BLOCK_SIZE=block_size,
    )
    return out


if current_platform.is_cuda_alike():
    eplb_map_to_physical_and_record = eplb_map_and_record_triton
else:

    def eplb_map_to_physical_and_record(
        topk_ids: torch.Tensor,
        expert_load_view: torch.Tensor,
        logical_to_physical_map: torch.Tensor,
        logical_replica_count: torch.Tensor,
        record_enabled: torch.Tensor,
    ) -> torch.Tensor:
        # No EPLB off CUDA-alike platforms: ids pass through unmapped.
        return topk_ids
