"""Fragment: upstream's map+record kernel (vllm/model_executor/layers/
fused_moe/router/base_router.py, from 0.31) counting into per-program
shards. The patch `eplb_sharded_load` of the current line puts it in place
of the kernel's `tl.atomic_add(...)`; EplbState's side is shared with the
backport (series/shared/fragments/eplb_sharded_load.py). The imports stand for
that file's.
"""

from vllm.triton_utils import tl


def count_into_program_shard(
    out_ptr, pid, num_shards, out_size, safe_physical_id, valid
):
    # Each program counts into its own copy of the load row, which EplbState
    # folds at its next step: with one row, a layer's atomics all land on the
    # same few cache lines and queue in the L2.
    shard_ptr = out_ptr + (pid % num_shards) * out_size
    tl.atomic_add(shard_ptr + safe_physical_id, 1, mask=valid, sem="relaxed")


def program_shard_of_the_row(out_ptr, pid, num_shards, out_size):
    """eplb_map_and_record then counts into `shard_ptr`, not `out_ptr`."""
    # Each program counts into its own copy of the load row, which EplbState
    # folds at its next step: with one row, a layer's atomics all land on the
    # same few cache lines and queue in the L2.
    shard_ptr = out_ptr + (pid % num_shards) * out_size
    return shard_ptr
