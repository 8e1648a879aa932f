"""Fragment: the replica choice patch `eplb_replica_hash_high_bits` puts into
_eplb_map_and_record_kernel in
vllm/model_executor/layers/fused_moe/router/base_router.py.
"""

def replica_from_high_bits(token, replicas):
    # Bits 16-31 of the hash: its low bits repeat with period R when R is a
    # power of two, so tokens a multiple of R apart would share a replica.
    replica = (((token * 2654435769) & 0xFFFFFFFF) >> 16) % replicas
    return replica
