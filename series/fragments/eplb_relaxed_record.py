"""Fragment: upstream's map+record kernel (vllm/model_executor/layers/
fused_moe/router/base_router.py, from 0.31) with its replica math in 32 bits.
The patch `eplb_relaxed_record` (current line) puts each holder's statement
in place of the kernel's statement of the same name. The imports stand for
that file's.
"""

from vllm.triton_utils import tl


def hash_in_32_bits(token_idx, KNUTH_MULTIPLIER):
    """Replaces the kernel's `hashed = ...`."""
    hashed = token_idx.to(tl.uint32) * KNUTH_MULTIPLIER  # wraps as & 0xFFFFFFFF
    return hashed


def replica_in_32_bits(hashed, replica_count):
    """Replaces the kernel's `replica_idx = ...`."""
    # replica_count >= 1: a 32-bit modulo, not a 64-bit division in software.
    replica_idx = (hashed % replica_count.to(tl.uint32)).to(tl.int64)
    return replica_idx
