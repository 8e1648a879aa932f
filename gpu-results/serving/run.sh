#!/usr/bin/env bash
# The serving harness's GPU run, from the repo root on the device machine, after
# the carry calls of README.md (the wheel chunks in /tmp/big, the dependency
# wheels in /tmp/deps); carry build/serving and .big/vllm-<base> (its
# SHA256SUMS and WHEEL.sha256), <base> being build/serving/BASE.
#   bash gpu-results/serving/run.sh engine [VARIANT ...]   # offline engine, in this order
#   [SHARE=0.45] bash gpu-results/serving/run.sh paired BASELINE VARIANT ...  # engines side by side, 16 layers
#   bash gpu-results/serving/run.sh serve                   # vllm serve + client, EPLB on/off
#   bash gpu-results/serving/run.sh serve2                  # the same at DP=2 (two GPUs)
# EPLB runs on one GPU with vLLM's TP x DP > 1 check lifted in the harness's
# processes only (one_gpu_lift.py): every number is "one GPU, check lifted".
set -uo pipefail
out=${OUT:?run on the device machine, which sets OUT}
base=$(cat build/serving/BASE) || exit 2   # the release make serving-bundle built for
root=$PWD here=$PWD/gpu-results/serving big=$PWD/.big/vllm-$base
wheel=$(awk '{print $2}' "$big/WHEEL.sha256")
if [ ! -f /tmp/site/.installed ]; then
  (cd /tmp/big && cat $(ls part* | sort) > $wheel && sha256sum -c "$big/WHEEL.sha256" \
    && cd /tmp/deps && sha256sum -c <(sed 's|deps[0-9]*/||' "$big/SHA256SUMS")) > /dev/null || exit 3
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    /tmp/big/$wheel /tmp/deps/*.whl || exit 3
  # The fork: upstream's install with the series' Python files laid over it.
  rm -rf /tmp/site-fork && cp -a /tmp/site /tmp/site-fork && cp -r build/serving/overlay/vllm/. /tmp/site-fork/vllm/
  touch /tmp/site/.installed
fi
python3 "$here/models.py" /tmp/models/qwen3-30b-a3b > /dev/null
python3 "$here/models.py" /tmp/models/qwen3-30b-a3b-136 --experts 136 > /dev/null
python3 "$here/models.py" /tmp/models/qwen3-30b-a3b-24l --layers 24 > /dev/null
python3 "$here/models.py" /tmp/models/qwen3-30b-a3b-16l --layers 16 > /dev/null
python3 "$here/models.py" /tmp/models/qwen3-30b-a3b-16l-136 --layers 16 --experts 136 > /dev/null
cp build/serving/overlay/SERIES "$out/fork-series.txt"
export VLLM_USE_FLASHINFER_SAMPLER=0 EPLB_ONE_GPU_LIFT=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
site() { [ "$1" = fork ] && echo /tmp/site-fork || echo /tmp/site; }
m128=/tmp/models/qwen3-30b-a3b m136=/tmp/models/qwen3-30b-a3b-136
# name: which vLLM, model, engine_bench.py's options
declare -A variants=(
  [up-noeplb-128]="up $m128"
  [up-noeplb-136]="up $m136"
  [fork-noeplb-136]="fork $m136"
  [up-eplb8]="up $m128 --eplb 8"
  [up-eplb8-sync]="up $m128 --eplb 8 --sync"
  [up-eplb0]="up $m128 --eplb 0"
  [up-eplb8-thread-ab]="up $m128 --eplb 8 --thread-ab"
  [up-eplb8-bare-thread]="up $m128 --eplb 8 --stand-in-thread bare"
  [up-eplb8-device-thread]="up $m128 --eplb 8 --stand-in-thread device"
  [up-eplb8-stream-thread]="up $m128 --eplb 8 --stand-in-thread stream"
  [up-eplb8-nocache]="up $m128 --eplb 8"
  [fork-eplb8]="fork $m128 --eplb 8"
  [up-eplb8-rec]="up $m128 --eplb 8 --record --check-load"
  [fork-eplb8-rec]="fork $m128 --eplb 8 --record --check-load"
  # The same check on the 16-layer model: a quicker run when device time is short.
  [fork-eplb8-rec-16l]="fork /tmp/models/qwen3-30b-a3b-16l --eplb 8 --record --check-load"
)
# extra environment of a variant
declare -A variant_env=([up-eplb8-nocache]="VLLM_DISABLE_COMPILE_CACHE=1")
case ${1:-engine} in
engine)
  shift || true
  names=("$@"); [ ${#names[@]} -gt 0 ] || names=(up-noeplb-136 up-eplb8 fork-eplb8)
  # A name given twice runs twice (interleave them): its log gets both runs.
  for name in "${names[@]}"; do
    set -- ${variants[$name]}
    which=$1 model=$2; shift 2
    env ${variant_env[$name]:-} PYTHONPATH=$(site $which):$here VLLM_ENABLE_V1_MULTIPROCESSING=0 timeout ${VARIANT_LIMIT:-240} \
      python3 "$here/engine_bench.py" --name "$name" --model "$model" --out "$out" "$@" \
      >> "$out/log-$name.txt" 2>&1
    rc=$?
    echo "$name: rc=$rc $(grep -E '^(up|fork)-' "$out/log-$name.txt" | tr '\n' ' ')"
    grep -E '^\{' "$out/log-$name.txt" | tail -1 | cut -c1-600
    [ $rc -eq 0 ] || grep -v Warning "$out/log-$name.txt" | tail -15
  done ;;
paired)
  # The same variants on 16 layers, all engines up at once, steps taken in turn.
  shift; declare -A layers16=([$m128]=/tmp/models/qwen3-30b-a3b-16l [$m136]=/tmp/models/qwen3-30b-a3b-16l-136)
  specs=()
  for name in "$@"; do
    set -- ${variants[$name]}
    which=$1 model=${layers16[$2]}; shift 2
    specs+=(--variant "$name" "$(site $which):$here" "--model $model $*")
  done
  # Each engine's share of GPU memory: four 16-layer engines fit an H200 at
  # 0.21; an H100 (80 GB) takes two at a time (SHARE=0.45).
  python3 "$here/paired_bench.py" --out "$out" --baseline "${specs[1]}" --share "${SHARE:-0.21}" \
    "${specs[@]}" ;;
serve)
  # Four servers at once (upstream and fork, EPLB on and off): 16 layers fit.
  python3 "$here/serve_bench.py" --out "$out" --model /tmp/models/qwen3-30b-a3b-16l \
    --site-up /tmp/site --site-fork /tmp/site-fork --here "$here" --eplb-off ;;
serve2)
  # Two GPUs (nvidia-h200-x2), nothing lifted: DP=2 servers, skewed routing.
  EPLB_ONE_GPU_LIFT=0 python3 "$here/serve_bench.py" --out "$out" --dp 2 \
    --model /tmp/models/qwen3-30b-a3b-24l --site-up /tmp/site --site-fork /tmp/site-fork \
    --here "$here" ;;
esac
