"""While EPLB records, every MoE layer's map+record kernel adds one to a
load counter per (token, slot) with `tl.atomic_add`'s default acq_rel
semantics, which fences every atomic; and it takes each id's replica as a
64-bit modulo of the token hash, which a GPU divides in software.

Neither is needed. The counts are read only after the kernel has ended,
by EplbState.step() copying the pass into the window (a later kernel in
stream order), so no atomic orders other memory accesses: relaxed is
enough. The hash is uint32 arithmetic (its products wrap exactly as the
`& 0xFFFFFFFF` did) and the replica count is at least one, so the modulo
is a 32-bit one and every id takes the same replica as before. From 0.34
the math lives in `eplb_map_and_record`, which the MegaMoE prepare kernel
shares: it gets the same change, and the clamp of the replica count to at
least one that 0.34 dropped (a count of 0 would leave the modulo, and the
map address made from it, undefined).

Measured on an H200 against 0.33.0's kernel, in one process under Triton
3.8 (0.33.0's; CUDA-graph replay, median of 3 rounds, both shapes and
routings, 1-32768 tokens), this commit over upstream's: recording
0.57-0.95x up to 8192 tokens (at 32768 the single row's contention
dominates: 0.64-1.24x; the next commit takes it), skipping 0.87-0.92x.
256 -> 288 experts, uniform routing, us per call:

  tokens   recording, upstream -> this   skipping, upstream -> this
  1        2.35 -> 1.59                  1.82 -> 1.59
  128      3.36 -> 2.02                  2.12 -> 1.87
  2048     6.72 -> 4.24                  2.27 -> 2.03
  8192     19.47 -> 12.48                2.69 -> 2.44

Against 0.34.0's kernel (its router and eplb_triton.py) under Triton
3.6, with the high-bits rule of the commit before: recording 0.61-1.13x
upstream's up to 8192 tokens (at 2048-8192 tokens the one row's contention
dominates and relaxed alone gains little; the next commit removes it),
skipping 0.94-0.99x. The runs and their commands are in gpu-results/
current-2026-11-30/ and current-2026-12-03/ of the series' repository.
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    assigns,
    bring_file,
    call_statement,
    insert_after,
    python_file,
    replace_statement,
    statement,
)
from series.current.sites import map_site, shared_map

SUBJECT = "[EPLB] Record with relaxed atomics, map with 32-bit replica math"
ORIGIN = "vendor"
DATE = "2026-11-30T07:30:00+00:00"


def apply(tree):
    code = Fragments("series/current/fragments/eplb_relaxed_record.py")
    path, function = map_site(tree)
    with python_file(tree, path) as src:
        new_hash = code.body("hash_in_32_bits")
        replace_statement(src, function, anchor=assigns("hashed"), code=new_hash)
        # Up to 0.33 the replica has a statement of its own; from 0.34 it is
        # taken inline, from the replica count loaded just before.
        if shared_map(tree):
            narrow = code.body("replicas_in_32_bits")
            if not src.has_statement(function, statement(narrow)):
                insert_after(src, function, anchor=assigns("replicas"), code=narrow)
            relaxed = code.body("count_relaxed")
            replace_statement(src, function, anchor=call_statement("tl.atomic_add"), code=relaxed)
        else:
            new_replica = code.body("replica_in_32_bits")
            replace_statement(src, function, anchor=assigns("replica_idx"), code=new_replica)
            add_call_keyword(
                src, function, callee="tl.atomic_add", keyword="sem", value='"relaxed"'
            )
    bring_file(tree, "tests/kernels/moe/test_eplb_relaxed_record.py")
