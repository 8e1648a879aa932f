"""Add benchmarks/kernels/benchmark_eplb_map_record.py. It loads
eplb_map_to_physical_and_record from several revisions of base_router.py
(by default the v0.19.1 base, the commit that brought the fused Triton
kernel, and HEAD; or from files) into one process, with an empty Triton
launch as the floor, and measures CUDA-graph replay time and eager host
time per call, recording on and off, for top-8 routing over 256 -> 288
and 128 -> 128 experts with uniform and Zipf-like routing, 1 to 32768
tokens. It prints a table and writes CSV and, with matplotlib, a PNG.
--smoke runs a tiny CPU version under the Triton interpreter.
"""

from eplb_fork.codemod import bring_file

SUBJECT = "[EPLB] Add a benchmark of map+record across revisions"
ORIGIN = "vendor"
DATE = "2026-11-29T12:03:00+00:00"


def apply(tree):
    bring_file(tree, "benchmarks/kernels/benchmark_eplb_map_record.py")
