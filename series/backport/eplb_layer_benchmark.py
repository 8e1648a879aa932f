"""Add benchmarks/kernels/benchmark_eplb_moe_layer.py: one MoE layer forward
in plain torch (router GEMM, softmax top-k, EPLB map+record, grouped GEMMs
over the physical experts, shared expert) at Qwen3-30B-A3B and DeepSeek-V3
layer shapes, 2048 to 32768 prefill tokens, with each map+record revision
loaded from the fork's history (as in benchmark_eplb_map_record.py) and
without EPLB. Whole forwards are captured in CUDA graphs and replayed; the
map+record call alone is timed the same way, and its share of the layer is
printed per revision, recording on and off. --smoke runs tiny shapes on
CPU under the Triton interpreter and checks the recorded load. Besides
the share of the measured layer it prints the share of the expert GEMMs'
FLOP floor at the GPU's peak, the strictest denominator.

H200, this series' map+record (recording / skipping), torch grouped GEMMs:

  model          tokens  share of layer    share of FLOP floor
  Qwen3-30B-A3B    2048  0.49% / 0.18%     3.72% / 1.41%
  Qwen3-30B-A3B    4096  0.20% / 0.12%     1.11% / 0.70%
  Qwen3-30B-A3B   32768  0.05% / 0.03%     0.24% / 0.14%
  DeepSeek-V3      2048  0.08% / 0.03%     0.47% / 0.15%
  DeepSeek-V3     32768  0.01% / 0.01%     0.03% / 0.02%

v0.19.1's compiled gather + scatter_add: 0.50-0.59% of the Qwen3 layer
at every size.
"""

from eplb_fork.codemod import bring_file

SUBJECT = "[EPLB] Add a benchmark of map+record's share of a MoE layer"
ORIGIN = "vendor"
DATE = "2026-11-29T15:20:00+00:00"


def apply(tree):
    bring_file(tree, "benchmarks/kernels/benchmark_eplb_moe_layer.py")
