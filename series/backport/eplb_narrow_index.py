"""The map spent most of its per-id work on 64-bit integer division: the
token index (`offs // top_k`) and the replica (`hash % replicas`) were
computed on int64 values, which a GPU divides in software, tens of
instructions each. Only the addresses need 64 bits.

The kernel now takes NARROW_INDEX (a constexpr): when every flat index a
launch's tiles touch fits in int32, the token index is an int32 division.
The hash is uint32 arithmetic in every launch (its products wrap exactly as
the `& 0xFFFFFFFF` did) and the replica modulo is 32-bit, so each id takes
the same replica as before; addresses stay 64-bit. The launch variant key
holds the new constexpr, so a direct launch never reuses the other width's
kernel.

Measured on an H200 (gpu-results/narrow-2026-11-30/, CUDA-graph replay,
median of 3 interleaved rounds), the commit before and this one counting
into the 64 shards a layer gets, as ratios to the PR kernel's skipping,
over both shapes (256 -> 288, 128 -> 128) and both routings:

  tokens    skipping, before -> now    recording, before -> now
  1-16      1.04-1.05 -> 0.95-0.97     1.03-1.07 -> 0.96-0.99
  128-2048  1.02-1.04 -> 0.95-0.97     1.05-1.09 -> 0.97-1.02
  8192      1.02-1.03 -> 0.98-0.99     1.15-1.29 -> 1.12-1.27
  32768     1.03-1.04 -> 0.99-1.01     1.64-1.95 -> 1.63-1.92

At 32768 tokens recording stays bound by its one relaxed atomic per id
(262144 per layer): in a probe, 256 shards instead of 64 gave 1.40-1.58 at
4x the memory and the fold's cost, and per-tile histograms or longer tiles
measured slower (gpu-results/speed-probe-2026-11-30/). Eager host time per
call is unchanged (1.14x an empty Triton launch; 1.11x before).
"""

from eplb_fork.codemod import (
    Fragments,
    add_definitions,
    add_parameter,
    assigns,
    bring_file,
    defines,
    insert_after,
    insert_element,
    python_file,
    replace_statement,
    uses,
)
from series.backport.sites import BASE_ROUTER, KERNEL, LAUNCHER

SUBJECT = "[EPLB] Map with 32-bit index math where a launch fits in it"
ORIGIN = "vendor"
DATE = "2026-11-30T07:00:00+00:00"


def apply(tree):
    code = Fragments("series/backport/fragments/eplb_narrow_index.py")
    with python_file(tree, BASE_ROUTER) as src:
        add_parameter(
            src, KERNEL, name="NARROW_INDEX", before="BLOCK_SIZE", annotation="tl.constexpr"
        )
        replace_statement(
            src,
            KERNEL,
            anchor=assigns("token"),
            code=code.body("token_of_each_id"),
            done=uses("NARROW_INDEX"),
        )
        hashed = code.body("replica_from_hash")
        replace_statement(
            src, KERNEL, anchor=assigns("replica"), code=hashed, done=assigns("hashed")
        )

        add_definitions(src, code=code.definition("_NARROW_INDEX_LIMIT"), before=defines(LAUNCHER))
        insert_after(src, LAUNCHER, anchor=assigns("grid"), code=code.body("index_width"))
        insert_element(
            src,
            LAUNCHER,
            anchor=assigns("args"),
            element="narrow_index",
            after="real_token_count is not None",
        )
        insert_after(
            src, LAUNCHER, anchor=assigns("variant"), code=code.body("variant_with_index_width")
        )
    bring_file(tree, "tests/kernels/moe/test_eplb_index_width.py")
