"""Fragment: upstream's replica rule (#40810) on its high bits, for the
current line. The patch `eplb_replica_high_bits` puts the holder's
statement in place of the `hashed = ...` that picks each id's replica:
in the router's i32 kernel up to 0.33, in the shared `eplb_map_and_record`
(vllm/model_executor/layers/fused_moe/eplb_triton.py) from 0.34. The
imports stand for those files' own.
"""

from vllm.triton_utils import tl


def hash_high_bits(token_idx, KNUTH_MULTIPLIER):
    # Bits 16-31 of the product: its low bits repeat with period R when R is
    # a power of two, so tokens a multiple of R apart would share a replica.
    hashed = ((token_idx.to(tl.int64) * KNUTH_MULTIPLIER) & 0xFFFFFFFF) >> 16
    return hashed
