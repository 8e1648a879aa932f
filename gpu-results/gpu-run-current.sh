#!/usr/bin/env bash
# The current line's GPU run, one bundle per release (made with `make test &&
# make gpu-bundle-current`; carry build/gpu-current), from the repo root:
#   bash gpu-results/gpu-run-current.sh [BASE ...]   # default: every bundle
#   TRITON_SITE=/tmp/bigsite bash gpu-results/gpu-run-current.sh
#                                              # under another Triton, installed
#                                              # there with --target (3.8: vLLM
#                                              # 0.33-0.34's, see gpu-results/README.md)
# Per release: kernel tests, memcheck, then the benchmark against upstream's
# kernel. Results land in $OUT/<base>-triton-<version>/.
set -uo pipefail
out=${OUT:?run on the device machine, which sets OUT}
if [ -n "${TRITON_SITE:-}" ]; then export PYTHONPATH=$TRITON_SITE${PYTHONPATH:+:$PYTHONPATH}; fi
root=$PWD
version=$(python -c "import triton; print(triton.__version__)")
bases=("$@"); [ ${#bases[@]} -gt 0 ] || bases=($(ls build/gpu-current))
for base in "${bases[@]}"; do
  dir=$out/$base-triton-$version && mkdir -p "$dir"
  cd "$root/build/gpu-current/$base" || exit 2
  export PYTHONPATH=$root${TRITON_SITE:+:$TRITON_SITE} EPLB_FORK=. PYTHONUNBUFFERED=1
  pytest_standalone="python -m pytest -p eplb_fork.gpu_standalone -p no:cacheprovider \
    --noconftest --import-mode=importlib --rootdir=. -c /dev/null"
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    > "$dir/machine.txt"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv >> "$dir/machine.txt"
  $pytest_standalone tests/kernels/moe/test_eplb_*.py -v -rA > "$dir/kernel-tests.txt" 2>&1
  echo "$base triton $version kernel tests: rc=$? $(tail -1 "$dir/kernel-tests.txt")"
  compute-sanitizer --tool memcheck --error-exitcode 9 $pytest_standalone -q \
    tests/kernels/moe/test_eplb_*.py > "$dir/memcheck.txt" 2>&1
  echo "$base triton $version memcheck: rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' "$dir/memcheck.txt" | tail -2 | tr '\n' ' ')"
  if [ -z "${SKIP_BENCH:-}" ]; then
    python -m eplb_fork.gpu_standalone "$root/gpu-results/current-2026-11-30/current_line.py" \
      > "$dir/current_line.txt" 2>&1
    echo "$base triton $version benchmark: rc=$?"; tail -12 "$dir/current_line.txt"
  fi
done
