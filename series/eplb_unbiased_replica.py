"""The fused map+record kernel picks replica (flattened position) % R for a
logical expert with R replicas. For top_k a multiple of R that is
(top-k slot) % R: every token that has a hot expert as its first choice
sends it to the same replica. Measured by the new test (8192 tokens, the
hot expert first for every token): max/mean tokens over its replicas is
2.0 for (top_k, R) = (2, 2) and (4, 2), 4.0 for (8, 4) and 8.0 for (8, 8);
redundancy does nothing for the expert that needs it most.

Take the replica from the token index instead, through a multiplicative
(Fibonacci) hash: the high 16 of the low 32 bits of token * 2654435769,
modulo R. All top-k slots of a token agree, and consecutive or strided
token sets spread evenly: the same test measures max/mean below 1.15 for
all four shapes, contiguous and every-8th-token routing alike.
"""

from eplb_fork.codemod import (
    add_call_keyword,
    add_parameter,
    bring_file,
    python_file,
    replace_statement,
    statement,
)

SUBJECT = "[EPLB] Pick replicas per token, without bias"
ORIGIN = "vendor, https://github.com/vllm-project/vllm/pull/40810"
DATE = "2026-11-29T12:01:00+00:00"

BASE_ROUTER = "vllm/model_executor/layers/fused_moe/router/base_router.py"
KERNEL = "_eplb_map_and_record_kernel"

REPLICA_BY_TOKEN = """
# One replica per token, by Fibonacci hashing of the token index (the high
# half of the low 32 bits of token * floor(2**32 / golden ratio)): all slots
# of a token agree, and consecutive or strided tokens spread evenly.
token = offs // top_k
replica = (((token * 2654435769) & 0xFFFFFFFF) >> 16) % replicas
"""


def apply(tree):
    with python_file(tree, BASE_ROUTER) as src:
        add_parameter(src, KERNEL, "top_k", before="BLOCK_SIZE")
        replace_statement(
            src, KERNEL, statement("replica = offs % replicas"), REPLICA_BY_TOKEN,
            done=statement("token = offs // top_k"), keep_comments=False,
        )  # fmt: skip
        add_call_keyword(
            src, "eplb_map_and_record_triton", f"{KERNEL}[...]", "top_k", "ids.shape[-1]"
        )
    with python_file(tree, "tests/kernels/moe/test_eplb_map_record.py") as src:
        replace_statement(
            src, "", statement('REPLICA_RULE = "flattened_position"'),
            'REPLICA_RULE = "token_hash"', done=statement('REPLICA_RULE = "token_hash"'),
        )  # fmt: skip
    bring_file(tree, "tests/kernels/moe/test_eplb_replica_balance.py")
