"""Fragment: the map's per-id index math in 32 bits where a launch allows it.

The patch `eplb_narrow_index` puts this code into the map+record kernel and
its launcher (vllm/model_executor/layers/fused_moe/router/base_router.py),
each piece where the patch says. The imports stand for that file's own.
"""

from vllm.triton_utils import tl

# A launch maps in 32-bit arithmetic when every flat id index its tiles touch
# (the last tile runs past the ids) stays below this.
_NARROW_INDEX_LIMIT = 2**31


def token_of_each_id(offs, top_k, NARROW_INDEX):
    # In int32 where it fits: a 64-bit division is tens of instructions per id.
    token = offs.to(tl.int32) // top_k if NARROW_INDEX else offs // top_k
    return token


def replica_from_hash(token, replicas):
    hashed = token.to(tl.uint32) * 2654435769  # wraps as `& 0xFFFFFFFF` did
    replica = ((hashed >> 16) % replicas.to(tl.uint32)).to(tl.int64)
    return replica


def index_width(numel, block_size):
    narrow_index = numel + block_size <= _NARROW_INDEX_LIMIT
    return narrow_index


def variant_with_index_width(variant, narrow_index):
    variant += (narrow_index,)
    return variant
