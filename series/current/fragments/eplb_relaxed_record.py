"""Fragment: upstream's map+record (the router's i32 kernel up to 0.33, the
shared `eplb_map_and_record` in vllm/model_executor/layers/fused_moe/
eplb_triton.py from 0.34) with its replica math in 32 bits. The patch
`eplb_relaxed_record` (current line) puts each holder's statements where
the patch says. The imports stand for those files'.
"""

from vllm.triton_utils import tl


def hash_in_32_bits(token_idx, KNUTH_MULTIPLIER):
    # uint32 products wrap as `& 0xFFFFFFFF` did.
    hashed = (token_idx.to(tl.uint32) * KNUTH_MULTIPLIER) >> 16
    return hashed


def replica_in_32_bits(hashed, replica_count):
    # replica_count >= 1: a 32-bit modulo, not a 64-bit division in software.
    replica_idx = (hashed % replica_count.to(tl.uint32)).to(tl.int64)
    return replica_idx


def replicas_in_32_bits(replicas):
    """So that `hashed % replicas` divides in 32 bits."""
    # At least one replica, as up to 0.33: a count of 0 would leave the
    # modulo, and so the map's address, undefined.
    replicas = tl.maximum(replicas, 1).to(tl.uint32)
    return replicas


def count_relaxed(expert_load, record, physical_ids):
    tl.atomic_add(
        expert_load + tl.where(record, physical_ids, 0), 1, mask=record, sem="relaxed"
    )
