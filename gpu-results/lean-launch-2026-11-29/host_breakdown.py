"""Where the eager host time of one map+record call goes (H200 host).

Run on the GPU machine from a `make gpu-bundle` tree:
    cd build/gpu && PYTHONPATH=$PWD/../.. EPLB_FORK=. python -m eplb_fork.gpu_standalone \
        ../../gpu-results/lean-launch-2026-11-29/host_breakdown.py
Each line: median over 9 interleaved rounds of 1000 back-to-back calls, in us.
"""

import statistics
import time

import torch
import vllm.model_executor.layers.fused_moe.router.base_router as router
from vllm.triton_utils import tl, triton


@triton.jit
def _empty_kernel(x_ptr, n, BLOCK_SIZE: tl.constexpr):
    pass


def per_call_us(calls: dict, per_round: int = 1000, rounds: int = 9) -> dict:
    """The callables take turns round by round; median round per callable."""
    times: dict = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    torch.cuda.synchronize()
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name].append((time.perf_counter() - start) * 1e6 / per_round)
            torch.cuda.synchronize()
    return {name: statistics.median(t) for name, t in times.items()}


ids = torch.randint(0, 256, (1, 8), dtype=torch.int32, device="cuda")
load = torch.zeros(288, dtype=torch.int32, device="cuda")
l2p = torch.full((256, 1024), -1, dtype=torch.int64, device="cuda")
l2p[:, 0] = torch.arange(256)
counts = torch.ones(256, dtype=torch.int64, device="cuda")
flag = torch.ones((), dtype=torch.bool, device="cuda")
real = torch.full((), 1, dtype=torch.int64, device="cuda")
kernel_args = dict(
    topk_ids_ptr=ids,
    out_ids_ptr=torch.empty_like(ids),
    logical_to_physical_ptr=l2p,
    replica_count_ptr=counts,
    expert_load_ptr=load,
    record_enabled_ptr=flag,
    numel=8,
    num_logical=256,
    map_slots=1024,
    num_physical=288,
    top_k=8,
    real_tokens_ptr=real,
    COUNT_REAL_ONLY=True,
    HISTOGRAM_BINS=0,
    BLOCK_SIZE=256,
)
args = list(kernel_args.values())
router.eplb_map_and_record_triton(ids, load, l2p, counts, flag, real)
(layer,) = router._layer_launches.values()
run, function, metadata, current_stream = next(iter(layer.compiled.values()))
launch = (1, 1, 1, current_stream(0), function, metadata, None, None, None)

rows = {
    "empty Triton launch (regular path)": lambda: _empty_kernel[(1,)](ids, 8, BLOCK_SIZE=256),
    "map+record, Triton's regular path": lambda: router._eplb_map_and_record_kernel[(1,)](
        *args, num_warps=4
    ),
    "map+record, compiled launcher alone": lambda: run(*launch, *args),
    "_layer_launch (per-layer state lookup)": lambda: router._layer_launch(
        load, l2p, counts, flag, real
    ),
    "torch.empty_like (the output)": lambda: torch.empty_like(ids),
    "torch.empty_like(dtype=...)": lambda: torch.empty_like(ids, dtype=torch.int64),
    "eplb_map_and_record_triton, whole call": lambda: router.eplb_map_and_record_triton(
        ids, load, l2p, counts, flag, real
    ),
}
measured = per_call_us(rows)
# The same call with the launch replaced by nothing: the wrapper's own Python.
router._launch_hooks_installed = lambda runtime: False
variant = next(iter(layer.compiled))
layer.compiled[variant] = (lambda *args: None, function, metadata, current_stream)
measured |= per_call_us(
    {
        "eplb_map_and_record_triton, launcher call stubbed": lambda: (
            router.eplb_map_and_record_triton(ids, load, l2p, counts, flag, real)
        )
    }
)
for name, us in measured.items():
    print(f"{name:48s} {us:7.2f} us")
