#!/usr/bin/env bash
# The whole GPU run of the series, in two device calls from the repo root of
# a tree made with `make fork && make gpu-bundle` (carry build/gpu):
#   bash gpu-results/gpu-run.sh tests   # kernel tests, then memcheck
#   bash gpu-results/gpu-run.sh bench   # map+record benchmark per revision
# TRITON_SITE=DIR runs under another Triton installed there with --target
# (results then land in $OUT/backport-triton-<version>/).
# vLLM does not import on the GPU machine: everything goes through
# eplb_fork.gpu_standalone. Results land in $OUT.
set -uo pipefail
out=${OUT:?run on the device machine, which sets OUT}
if [ -n "${TRITON_SITE:-}" ]; then
  export PYTHONPATH=$TRITON_SITE${PYTHONPATH:+:$PYTHONPATH}
  out=$out/backport-triton-$(python -c "import triton; print(triton.__version__)") && mkdir -p "$out"
fi
cd build/gpu || exit 2
export PYTHONPATH=$PWD/../..${PYTHONPATH:+:$PYTHONPATH} EPLB_FORK=. PYTHONUNBUFFERED=1
pytest_standalone="python -m pytest -p eplb_fork.gpu_standalone -p no:cacheprovider \
  --noconftest --import-mode=importlib --rootdir=. -c /dev/null"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  > "$out/machine.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv >> "$out/machine.txt"

case "${1:-}" in
tests)
  $pytest_standalone tests/kernels/moe/test_eplb_*.py -v -rA > "$out/kernel-tests.txt" 2>&1
  echo "kernel tests: rc=$? $(tail -1 "$out/kernel-tests.txt")"
  # Address math and every masked path: invalid ids, empty and padded
  # batches, row windows, direct launches, the per-id and histogram paths.
  compute-sanitizer --tool memcheck --error-exitcode 9 $pytest_standalone -q \
    tests/kernels/moe/test_eplb_{map_record,record_paths,padded_tokens,lean_launch,dp_rows,sharded_load,index_width}.py \
    -k "lean or graph or (dp_rows and cuda) or (sharded and cuda) or (index_width and cuda) or cuda and (corrupt or invalid or empty or non_contiguous or random or 4600 or padded or beyond)" \
    > "$out/memcheck.txt" 2>&1
  echo "memcheck: rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' "$out/memcheck.txt" | tail -2 | tr '\n' ' ')"
  ;;
bench)
  python -m eplb_fork.gpu_standalone benchmarks/kernels/benchmark_eplb_map_record.py \
    --revision base=revisions/base.py --revision pr=revisions/pr.py \
    --revision lean=revisions/lean.py --revision dprows=revisions/dprows.py \
    --revision shards=revisions/shards.py --revision head=revisions/head.py \
    --csv "$out/bench.csv" --plot "$out/bench.png" > "$out/bench.txt" 2>&1
  echo "benchmark: rc=$?"; tail -8 "$out/bench.txt"
  # The benchmark hands every revision one load row; HEAD counts into the
  # [K, P] shards EplbState gives each layer: measured here, with the fold.
  python -m eplb_fork.gpu_standalone ../../gpu-results/narrow-2026-11-30/head_shards.py \
    > "$out/head_shards.txt" 2>&1
  echo "head with shards: rc=$?"; cat "$out/head_shards.txt"
  ;;
*) echo "usage: $0 tests|bench" >&2; exit 2 ;;
esac
