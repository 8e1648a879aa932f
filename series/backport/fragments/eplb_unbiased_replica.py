"""Fragment: upstream's per-token replica choice (#40810), which patch
`eplb_unbiased_replica` puts into _eplb_map_and_record_kernel in
vllm/model_executor/layers/fused_moe/router/base_router.py.
"""

def replica_by_token(offs, top_k, replicas):
    # One replica per token, so all its top-k slots agree, from a
    # multiplicative (Fibonacci) hash of the token index: 2654435769 is
    # floor(2**32 / golden ratio).
    token = offs // top_k
    replica = ((token * 2654435769) & 0xFFFFFFFF) % replicas
    return replica
