#!/usr/bin/env bash
# The current line's GPU run (vLLM 0.31-0.33's router with our follow-ups),
# from the repo root of a tree made with `make test-current && make
# gpu-bundle-current` (carry build/gpu-current):
#   bash gpu-results/gpu-run-current.sh        # under the machine's Triton
#   TRITON_SITE=/tmp/bigsite bash gpu-results/gpu-run-current.sh
#                                              # under another Triton, installed
#                                              # there with --target (3.8: vLLM
#                                              # 0.33.0's, see gpu-results/README.md)
# Kernel tests, memcheck, then the benchmark against upstream's kernel.
# Results land in $OUT/triton-<version>/.
set -uo pipefail
out=${OUT:?run on the device machine, which sets OUT}
if [ -n "${TRITON_SITE:-}" ]; then export PYTHONPATH=$TRITON_SITE${PYTHONPATH:+:$PYTHONPATH}; fi
version=$(python -c "import triton; print(triton.__version__)")
out=$out/triton-$version && mkdir -p "$out"
cd build/gpu-current || exit 2
export PYTHONPATH=$PWD/../..${PYTHONPATH:+:$PYTHONPATH} EPLB_FORK=. PYTHONUNBUFFERED=1
pytest_standalone="python -m pytest -p eplb_fork.gpu_standalone -p no:cacheprovider \
  --noconftest --import-mode=importlib --rootdir=. -c /dev/null"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  > "$out/machine.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv >> "$out/machine.txt"
$pytest_standalone tests/kernels/moe/test_eplb_*.py -v -rA > "$out/kernel-tests.txt" 2>&1
echo "triton $version kernel tests: rc=$? $(tail -1 "$out/kernel-tests.txt")"
compute-sanitizer --tool memcheck --error-exitcode 9 $pytest_standalone -q \
  tests/kernels/moe/test_eplb_*.py > "$out/memcheck.txt" 2>&1
echo "triton $version memcheck: rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' "$out/memcheck.txt" | tail -2 | tr '\n' ' ')"
python -m eplb_fork.gpu_standalone ../../gpu-results/current-2026-11-30/current_line.py \
  > "$out/current_line.txt" 2>&1
echo "triton $version benchmark: rc=$?"; tail -25 "$out/current_line.txt"
