"""With recording on, the map+record kernel adds 1 to a global counter per
(token, top-k slot): at 32768 tokens x top-8 that is 262144 atomics onto
288 counters, and recording costs 20x what skipping does (H200, CUDA-graph
replay, 256 -> 288 experts, uniform: 70.2 us recording vs 3.5 us skipping).

From 32768 ids up, and wherever a tile of the grid holds 512 ids or more,
count the tile's physical ids with tl.histogram first and add each
non-empty bin with one atomic. Ids that are not counted (invalid, padded,
out of range) go to a spill bin past every expert, and the branch runs only
when the device flag is set. Tiles are sized so the grid still fills the
GPU (132 programs), with more warps per large tile, so skipping costs what
it did. Smaller launches keep one atomic per id: there the histogram costs
more than it saves. Maps with more than MAX_HISTOGRAM_BINS physical experts
keep one atomic per id too. Counts stay exact; a test checks both paths
against the bincount of the ids the kernel returns.

Measured with benchmarks/kernels/benchmark_eplb_map_record.py on an H200
(us per call, CUDA-graph replay, top-8, 256 -> 288, uniform; PR -> this):

  tokens   recording        skipping
  8192     13.30 ->  6.24   2.55 -> 2.49
  32768    70.20 ->  7.92   3.51 -> 3.71
  2048      6.59 ->  6.66   2.18 -> 2.23

Skewed routing at 32768 tokens: 46.96 -> 7.50. Recording still costs 2.3x
skipping at 32768 tokens: the histogram itself, not the atomics, bounds it
(restricting the atomics to 8 experts does not change the time).
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    add_definitions,
    add_parameter,
    assigns,
    bring_file,
    call_statement,
    defines,
    enclose,
    if_block,
    python_file,
    replace_statement,
)
from series.backport.sites import BASE_ROUTER, KERNEL, LAUNCHER

SUBJECT = "[EPLB] Aggregate expert load per tile before the atomics"
ORIGIN = "vendor"
DATE = "2026-11-29T12:04:00+00:00"


def apply(tree):
    code = Fragments("series/backport/fragments/eplb_block_histogram.py")
    with python_file(tree, BASE_ROUTER) as src:
        add_definitions(src, code=code.definition("MAX_HISTOGRAM_BINS"), after=defines(KERNEL))
        add_parameter(
            src, KERNEL, name="HISTOGRAM_BINS", before="BLOCK_SIZE", annotation="tl.constexpr"
        )
        enclose(
            src,
            KERNEL,
            anchor=call_statement("tl.atomic_add"),
            code=code.body("count_per_tile"),
            done=if_block("HISTOGRAM_BINS > 0"),
        )
        replace_statement(
            src,
            LAUNCHER,
            anchor=assigns("block_size"),
            code=code.body("size_tiles"),
            done=assigns("min_block"),
        )
        launch = f"{KERNEL}[...]"
        add_call_keyword(
            src,
            LAUNCHER,
            callee=launch,
            keyword="HISTOGRAM_BINS",
            value="bins if use_histogram else 0",
        )
        add_call_keyword(
            src,
            LAUNCHER,
            callee=launch,
            keyword="num_warps",
            value="16 if block_size >= 1024 else (8 if block_size >= 512 else 4)",
        )
    bring_file(tree, "tests/kernels/moe/test_eplb_record_paths.py")
