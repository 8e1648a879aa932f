#!/usr/bin/env bash
# The GPU run of the kernels, from the repo root on the device machine, of
# the bundles `make fork && make test-bases && make gpu-bundle` made (carry
# build/gpu; one per release, each under its line's data: bundle.json):
#   bash gpu-results/gpu-run.sh [RELEASE ...]          # default: every bundle
#   PHASES=tests bash gpu-results/gpu-run.sh 0.19.1    # tests (+memcheck) or bench only
#   TRITON_SITE=/tmp/bigsite bash gpu-results/gpu-run.sh  # under another Triton,
#       installed there with --target (3.8: see gpu-results/README.md)
# vLLM does not import there: everything goes through eplb_fork.gpu_standalone.
# Per release, in $OUT/<release>-triton-<version>/: machine.txt,
# kernel-tests.txt, memcheck.txt, and one <benchmark>.txt per benchmark.
set -uo pipefail
out=${OUT:?run on the device machine, which sets OUT}
if [ -n "${TRITON_SITE:-}" ]; then export PYTHONPATH=$TRITON_SITE${PYTHONPATH:+:$PYTHONPATH}; fi
root=$PWD phases=${PHASES:-tests bench}
version=$(python -c "import triton; print(triton.__version__)")
releases=("$@"); [ ${#releases[@]} -gt 0 ] || releases=($(ls build/gpu))
# A field of the bundle's manifest, a line per command, its arguments split
# by \x1f ({out} and {repo} filled in).
manifest() {
  python -c 'import json, sys
value = json.load(open("bundle.json"))[sys.argv[1]]
rows = value if sys.argv[1] == "benchmarks" else [value]
for row in rows:
    sys.stdout.write("\x1f".join(a.format(out=sys.argv[2], repo=sys.argv[3]) for a in row) + "\n")
' "$1" "$dir" "$root"
}
for release in "${releases[@]}"; do
  dir=$out/$release-triton-$version && mkdir -p "$dir"
  cd "$root/build/gpu/$release" || exit 2
  export PYTHONPATH=$root${TRITON_SITE:+:$TRITON_SITE} EPLB_FORK=. PYTHONUNBUFFERED=1
  pytest_standalone="python -m pytest -p eplb_fork.gpu_standalone -p no:cacheprovider \
    --noconftest --import-mode=importlib --rootdir=. -c /dev/null"
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    > "$dir/machine.txt"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv >> "$dir/machine.txt"
  tag="$release ($(python -c 'import json; print(json.load(open("bundle.json"))["line"])') line), triton $version"
  if [[ " $phases " == *" tests "* ]]; then
    $pytest_standalone tests/kernels/moe/test_eplb_*.py -v -rA > "$dir/kernel-tests.txt" 2>&1
    echo "$tag kernel tests: rc=$? $(tail -1 "$dir/kernel-tests.txt")"
    IFS=$'\x1f' read -r -a selected < <(manifest memcheck)
    [ ${#selected[@]} -gt 0 ] || selected=(tests/kernels/moe/test_eplb_*.py)
    compute-sanitizer --tool memcheck --error-exitcode 9 $pytest_standalone -q "${selected[@]}" \
      > "$dir/memcheck.txt" 2>&1
    echo "$tag memcheck: rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' "$dir/memcheck.txt" | tail -2 | tr '\n' ' ')"
  fi
  if [[ " $phases " == *" bench "* ]]; then
    while IFS=$'\x1f' read -r -a command; do
      name=$(basename "${command[0]}" .py)
      python -m eplb_fork.gpu_standalone "${command[@]}" > "$dir/$name.txt" 2>&1
      echo "$tag $name: rc=$?"; tail -12 "$dir/$name.txt"
    done < <(manifest benchmarks)
  fi
done
