"""Upstream's per-token replica rule (#40810) picks replica
((token * 2654435769) & 0xFFFFFFFF) % R: the product's low bits. For R a
power of two that is (token * odd) mod R, a function of token mod R alone,
so tokens that pick a hot expert a multiple of R apart all take one of its
replicas, as the first token of every prompt in a batch of equal-length
prompts may. Measured by the new test (8192 tokens, top-8, the hot expert
first for every 8th or every 32nd token): max/mean tokens over its replicas
is 2.0, 4.0 and 8.0 for R = 2, 4 and 8, everything on one replica.

Take bits 16-31 of the product instead, as Fibonacci hashing does:
(((token * 2654435769) & 0xFFFFFFFF) >> 16) % R. The same routing then
measures max/mean of at most 1.016 for every 8th token and 1.063 for every
32nd, and at most 1.004 for contiguous tokens (1.000 with the low bits).
All top-k slots of a token still agree, and replicas hold the same weights:
only the balance changes, not the layer's output. This is the rule the
0.19 backport of the series uses, so both pick the same replica for every
(token, replica count).
"""

from eplb_fork.codemod import (
    Fragments,
    assigns,
    bring_file,
    python_file,
    replace_statement,
)
from series.current.sites import map_site

SUBJECT = "[EPLB] Take the replica from the high bits of the token hash"
ORIGIN = "vendor"
DATE = "2026-11-30T07:25:00+00:00"


def apply(tree):
    code = Fragments("series/current/fragments/eplb_replica_high_bits.py")
    high_bits = code.body("hash_high_bits")
    path, function = map_site(tree)
    with python_file(tree, path) as src:
        replace_statement(
            src, function, anchor=assigns("hashed"), code=high_bits, keep_comments=False
        )
    bring_file(tree, "tests/kernels/moe/eplb_router_entry.py")
    bring_file(tree, "tests/kernels/moe/test_eplb_replica_high_bits.py")
