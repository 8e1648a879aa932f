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
    add_call_keyword,
    add_parameter,
    bring_file,
    defines,
    if_block,
    insert_after,
    python_file,
    replace_statement,
    statement,
)

SUBJECT = "[EPLB] Aggregate expert load per tile before the atomics"
ORIGIN = "vendor"
DATE = "2026-11-29T12:04:00+00:00"

BASE_ROUTER = "vllm/model_executor/layers/fused_moe/router/base_router.py"
KERNEL = "_eplb_map_and_record_kernel"
LAUNCHER = "eplb_map_and_record_triton"
PER_ID_ATOMIC = "tl.atomic_add(expert_load_ptr + tl.where(counted, physical, 0), 1, mask=counted)"

MAX_BINS = """


# Above this many physical experts (plus a spill bin) the kernel counts with
# one atomic per id instead of a per-tile histogram.
MAX_HISTOGRAM_BINS = 4096
"""

PER_TILE_COUNTS = f"""
if HISTOGRAM_BINS > 0:
    if record:
        # Count the tile's ids per expert (a histogram in shared memory),
        # then one atomic per non-empty expert. Ids not counted go to the
        # last bin, which lies past every expert.
        bins = tl.where(counted, physical, HISTOGRAM_BINS - 1).to(tl.int32)
        per_expert = tl.histogram(bins, HISTOGRAM_BINS)
        experts = tl.arange(0, HISTOGRAM_BINS)
        tl.atomic_add(
            expert_load_ptr + experts,
            per_expert,
            mask=(per_expert > 0) & (experts < num_physical),
        )
else:
    {PER_ID_ATOMIC}
"""

TILE_SIZE = """
# Enough programs to fill the GPU (an H200 has 132 SMs) for the mapping, and
# at prefill sizes tiles large enough for the histogram to fold many ids into
# one atomic per expert; below 512 ids a tile gains nothing from it.
min_block = 512 if numel >= 32768 else 256
per_program = triton.next_power_of_2(triton.cdiv(numel, 132))
block_size = min(2048, max(min_block, per_program))
bins = triton.next_power_of_2(expert_load_view.shape[0] + 1)
use_histogram = block_size >= 512 and bins <= MAX_HISTOGRAM_BINS
"""


def apply(tree):
    with python_file(tree, BASE_ROUTER) as src:
        insert_after(src, "", defines(KERNEL), MAX_BINS)
        add_parameter(src, KERNEL, "HISTOGRAM_BINS", before="BLOCK_SIZE",
                      annotation="tl.constexpr")  # fmt: skip
        replace_statement(
            src, KERNEL, statement(PER_ID_ATOMIC), PER_TILE_COUNTS,
            done=if_block("HISTOGRAM_BINS > 0"),
        )  # fmt: skip
        replace_statement(
            src, LAUNCHER, statement("block_size = 256"), TILE_SIZE,
            done=statement("min_block = 512 if numel >= 32768 else 256"),
        )  # fmt: skip
        launch = f"{KERNEL}[...]"
        add_call_keyword(src, LAUNCHER, launch, "HISTOGRAM_BINS", "bins if use_histogram else 0")
        add_call_keyword(
            src, LAUNCHER, launch, "num_warps",
            "16 if block_size >= 1024 else (8 if block_size >= 512 else 4)",
        )  # fmt: skip
    bring_file(tree, "tests/kernels/moe/test_eplb_record_paths.py")
