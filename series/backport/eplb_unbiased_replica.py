"""The fused map+record kernel picks replica (flattened position) % R for a
logical expert with R replicas. For top_k a multiple of R that is
(top-k slot) % R: every token that has a hot expert as its first choice
sends it to the same replica. Measured by the new test (8192 tokens, the
hot expert first for every token or every third): max/mean tokens over its
replicas is 2.0 for (top_k, R) = (2, 2) and (4, 2), 3.0 for (6, 3), 4.0
for (8, 4) and 8.0 for (8, 8); redundancy does nothing for the expert that
needs it most.

Backport upstream's fix: the replica comes from the token index
(flat index // top_k) through a multiplicative hash,
((token * 2654435769) & 0xFFFFFFFF) % R, where 2654435769 is
floor(2**32 / golden ratio). All top-k slots of a token agree, and the same
test measures max/mean of at most 1.001 for all five shapes with the hot
expert in every token, and at most 1.002 in every third.

For R a power of two the rule is (token * odd) mod R, a function of
token mod R alone: tokens that pick an expert a multiple of R apart still
all take one of its replicas. The next patch measures and addresses that.
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    add_parameter,
    assigns,
    bring_file,
    python_file,
    replace_statement,
    statement,
)
from series.backport.sites import BASE_ROUTER, KERNEL

SUBJECT = "[EPLB] Pick the replica per token, by a multiplicative hash"
ORIGIN = "backport, https://github.com/vllm-project/vllm/pull/40810"
APPLIED_UPSTREAM = "v0.20.0, https://github.com/vllm-project/vllm/pull/40810"
DATE = "2026-11-29T12:01:00+00:00"

CODE = "series/backport/fragments/eplb_unbiased_replica.py"


def apply(tree):
    with python_file(tree, BASE_ROUTER) as src:
        add_parameter(src, KERNEL, name="top_k", before="BLOCK_SIZE")
        replace_statement(
            src,
            KERNEL,
            anchor=assigns("replica"),
            code=Fragments(CODE).body("replica_by_token"),
            done=statement("token = offs // top_k"),
            keep_comments=False,
        )
        add_call_keyword(
            src,
            "eplb_map_and_record_triton",
            callee=f"{KERNEL}[...]",
            keyword="top_k",
            value="ids.shape[-1]",
        )
    bring_file(tree, "tests/kernels/moe/test_eplb_replica_balance.py")
