# SPDX-License-Identifier: Apache-2.0
"""The PR kernel, patch 13 (sharded counters) and HEAD (patch 14's 32-bit
map math), the sharded ones counting into the [K, num_physical] shards
EplbState gives each layer, side by side in one process; then the per-step
fold, and map+record's share of one MoE layer forward with HEAD's shards.

The fork's benchmarks (patches 8 and 11) hand every revision one load row;
here the sharded revisions get K rows (K from the fork's own formula for 61
layers). Cells are the median of three interleaved rounds of CUDA-graph
replay. Run on the GPU machine from build/gpu (a `make gpu-bundle` of the
14-patch fork):

    python -m eplb_fork.gpu_standalone \
        ../../gpu-results/narrow-2026-11-30/head_shards.py > head_shards.txt
"""

import ast
import importlib.util
import statistics
import sys
from pathlib import Path

import torch


def load_module(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, "benchmarks/kernels")
bench = load_module("benchmark_eplb_map_record", "benchmarks/kernels/benchmark_eplb_map_record.py")
layer_bench = load_module("layer_bench", "benchmarks/kernels/benchmark_eplb_moe_layer.py")

LAYERS = 61
ROUNDS = 3


def shard_count(num_physical: int) -> int:
    """The fork's formula, read from its eplb_state.py rather than retyped."""
    source = Path("vllm/distributed/eplb/eplb_state.py").read_text()
    namespace: dict = {}
    tree = ast.parse(source)
    (node,) = [n for n in tree.body if getattr(n, "name", "") == "expert_load_shard_count"]
    exec(compile(ast.Module([node], type_ignores=[]), "eplb_state.py", "exec"), namespace)
    return namespace["expert_load_shard_count"](LAYERS, num_physical)


def median_rounds(calls: list) -> list[float]:
    rounds = [[bench.graph_time_us(c) for c in calls] for _ in range(ROUNDS)]
    return [statistics.median(r[i] for r in rounds) for i in range(len(calls))]


def kernel_table(revisions, flags):
    columns = ["pr", "shards", "head", "empty"]
    print(
        f"graph_us per call, median of {ROUNDS} rounds, rec / skip; "
        f"K = shards per layer ({LAYERS} layers)"
    )
    print(
        f"{'shape':>9} {'routing':>8} {'tokens':>6} {'K':>3} "
        + " ".join(f"{c + ' rec':>12} {c + ' skip':>12}" for c in columns)
        + f" {'head rec/pr skip':>16} {'head skip/pr skip':>17}"
    )
    host_rows = []
    for shape in bench.SHAPES:
        num_physical = bench.SHAPES[shape][1]
        shards = shard_count(num_physical)
        for routing in ("uniform", "skewed"):
            for tokens in bench.TOKENS:
                work = bench.make_workload(shape, routing, tokens, "cuda")
                sharded = torch.zeros(shards, num_physical, dtype=torch.int32, device="cuda")
                loads = {"pr": work.load, "shards": sharded, "head": sharded}
                calls = {}
                for record in (True, False):
                    flag = flags[record]
                    for name in ("pr", "shards", "head"):
                        calls[name, record] = lambda fn=revisions[name], load=loads[
                            name
                        ], flag=flag, w=work: fn(w.topk_ids, load, w.l2p, w.counts, flag)
                    calls["empty", record] = lambda w=work: bench.empty_launch(w.topk_ids)
                # Exact first: each sharded revision's shards sum to the
                # bincount of its ids, and HEAD maps as patch 13 did.
                outs = {}
                for name in ("shards", "head"):
                    sharded.zero_()
                    outs[name] = calls[name, True]()
                    torch.cuda.synchronize()
                    want = torch.bincount(outs[name].flatten().long(), minlength=num_physical)
                    if not torch.equal(sharded.sum(0).long(), want):
                        sys.exit(f"{name} {shape} {routing} {tokens}: shard sum differs")
                if not torch.equal(outs["shards"], outs["head"]):
                    sys.exit(f"{shape} {routing} {tokens}: HEAD maps differently")
                keys = [(c, r) for c in columns for r in (True, False)]
                cells = dict(zip(keys, median_rounds([calls[k] for k in keys]), strict=True))
                pr_skip = cells["pr", False]
                print(
                    f"{shape:>9} {routing:>8} {tokens:>6} {shards:>3} "
                    + " ".join(f"{cells[k]:12.2f}" for k in keys)
                    + f" {cells['head', True] / pr_skip:16.2f}"
                    f" {cells['head', False] / pr_skip:17.2f}",
                    flush=True,
                )
                host_rows.append(bench.host_times_us(calls, 100, 7, torch.cuda.synchronize))
    print("\nhost_us per eager call, median over shapes, routings, sizes, rec and skip")
    empty = statistics.median(row["empty", r] for row in host_rows for r in (True, False))
    for column in columns:
        value = statistics.median(row[column, r] for row in host_rows for r in (True, False))
        print(f"{column:>8}: {value:6.1f} ({value / empty:.2f}x empty)")


def fold_table():
    print("\nper-step fold (pass += shards.sum(1); shards.zero_()), us per step, captured")
    for experts in (288, 4600):
        k = shard_count(experts)
        passes = torch.zeros(LAYERS, experts, dtype=torch.int32, device="cuda")
        model_shards = torch.ones(LAYERS, k, experts, dtype=torch.int32, device="cuda")

        def fold(passes=passes, model_shards=model_shards):
            passes.add_(model_shards.sum(1, dtype=torch.int32))
            model_shards.zero_()

        print(
            f"{LAYERS} layers x {experts} experts, K={k}: "
            f"{bench.graph_time_us(fold, calls_per_graph=5):.2f}"
        )


def layer_table(revisions, flags):
    print(
        "\nshare of one MoE layer forward (benchmark_eplb_moe_layer.py's layer), "
        "HEAD with its shards: map+record us / layer us"
    )
    print(
        f"{'model':>14} {'tokens':>6} {'layer us':>9} {'rec us':>7} {'skip us':>7} "
        f"{'rec share':>9} {'skip share':>10} {'rec of floor':>12}"
    )
    for name, shape in layer_bench.SHAPES.items():
        k = shard_count(shape.physical_experts)
        for tokens in (2048, 8192, 32768):
            layer = layer_bench.MoELayer(shape, tokens, "cuda", torch.bfloat16)
            layer.eplb.load = torch.zeros(
                k, shape.physical_experts, dtype=torch.int32, device="cuda"
            )
            layer_us = median_rounds([layer.forward_call(None, flags[True])])[0]
            rec, skip = median_rounds(
                [layer.map_record_call(revisions["head"], flags[r]) for r in (True, False)]
            )
            floor_us = layer_bench.layer_flops(shape, tokens) / 989.0 / 1e6
            print(
                f"{name:>14} {tokens:>6} {layer_us:9.1f} {rec:7.2f} {skip:7.2f} "
                f"{rec / layer_us:9.2%} {skip / layer_us:10.2%} {rec / floor_us:12.2%}",
                flush=True,
            )
            del layer
            torch.cuda.empty_cache()


def main() -> None:
    revisions = {
        name: bench.load_revision(name, Path(f"revisions/{name}.py").read_text())
        for name in ("pr", "shards", "head")
    }
    flags = {r: torch.tensor(r, dtype=torch.bool, device="cuda") for r in (True, False)}
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    kernel_table(revisions, flags)
    fold_table()
    layer_table(revisions, flags)


if __name__ == "__main__":
    main()
