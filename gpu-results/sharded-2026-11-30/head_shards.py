# SPDX-License-Identifier: Apache-2.0
"""HEAD's map+record counting into per-program shards, side by side with the
PR kernel and the commit before (`dprows`: per-tile histogram, DP row window), in one process.

The fork's benchmark (patch 8) hands every revision a 1-D load row, which
HEAD counts as one shard; here HEAD also gets the [K, num_physical] shards
EplbState hands each layer (K from the fork's own formula for 61 layers),
and the per-step fold is timed at the model sizes of the speed issue. Run on
the GPU machine from build/gpu (a `make gpu-bundle` of the 13-patch fork):

    python -m eplb_fork.gpu_standalone \
        ../../gpu-results/sharded-2026-11-30/head_shards.py > head_shards.txt
"""

import ast
import importlib.util
import statistics
import sys
from pathlib import Path

import torch

bench_spec = importlib.util.spec_from_file_location(
    "bench", "benchmarks/kernels/benchmark_eplb_map_record.py"
)
bench = importlib.util.module_from_spec(bench_spec)
bench_spec.loader.exec_module(bench)

LAYERS = 61


def shard_count(num_physical: int) -> int:
    """The fork's formula, read from its eplb_state.py rather than retyped."""
    source = Path("vllm/distributed/eplb/eplb_state.py").read_text()
    namespace: dict = {}
    tree = ast.parse(source)
    (node,) = [n for n in tree.body if getattr(n, "name", "") == "expert_load_shard_count"]
    exec(compile(ast.Module([node], type_ignores=[]), "eplb_state.py", "exec"), namespace)
    return namespace["expert_load_shard_count"](LAYERS, num_physical)


def main() -> None:
    revisions = {
        name: bench.load_revision(name, Path(f"revisions/{name}.py").read_text())
        for name in ("pr", "dprows", "head")
    }
    flags = {r: torch.tensor(r, dtype=torch.bool, device="cuda") for r in (True, False)}
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    columns = ["pr", "dprows", "head 1 shard", "head K shards", "empty"]
    print("graph_us per call, rec / skip;  K = shards per layer (61 layers)")
    print(f"{'shape':>9} {'routing':>8} {'tokens':>6} {'K':>3} "
          + " ".join(f"{c + ' rec':>16} {c + ' skip':>16}" for c in columns))
    host_rows = []
    for shape in bench.SHAPES:
        num_physical = bench.SHAPES[shape][1]
        shards = shard_count(num_physical)
        for routing in ("uniform", "skewed"):
            for tokens in bench.TOKENS:
                work = bench.make_workload(shape, routing, tokens, "cuda")
                sharded = torch.zeros(shards, num_physical, dtype=torch.int32, device="cuda")

                def call(fn, load, flag, work=work):
                    return lambda: fn(work.topk_ids, load, work.l2p, work.counts, flag)

                calls = {}
                for record in (True, False):
                    flag = flags[record]
                    calls["pr", record] = call(revisions["pr"], work.load, flag)
                    calls["dprows", record] = call(revisions["dprows"], work.load, flag)
                    calls["head 1 shard", record] = call(revisions["head"], work.load, flag)
                    calls["head K shards", record] = call(revisions["head"], sharded, flag)
                    calls["empty", record] = lambda w=work: bench.empty_launch(w.topk_ids)
                # Exact first: HEAD's shards sum to the bincount of its ids.
                sharded.zero_()
                out = calls["head K shards", True]()
                torch.cuda.synchronize()
                want = torch.bincount(out.flatten().long(), minlength=num_physical)
                if not torch.equal(sharded.sum(0).long(), want):
                    sys.exit(f"{shape} {routing} {tokens}: shard sum differs from bincount")
                cells = [bench.graph_time_us(calls[c, r]) for c in columns for r in (True, False)]
                print(f"{shape:>9} {routing:>8} {tokens:>6} {shards:>3} "
                      + " ".join(f"{x:16.2f}" for x in cells), flush=True)
                host = bench.host_times_us(calls, 100, 7, torch.cuda.synchronize)
                host_rows.append(host)
    print("\nhost_us per eager call, median over shapes, routings, sizes, rec and skip")
    for column in columns:
        values = [row[column, r] for row in host_rows for r in (True, False)]
        empty = [row["empty", r] for row in host_rows for r in (True, False)]
        print(f"{column:>14}: {statistics.median(values):6.1f} "
              f"({statistics.median(values) / statistics.median(empty):.2f}x empty)")

    print("\nper-step fold (pass += shards.sum(1); shards.zero_()), us per step")
    for experts in (288, 4600):
        k = shard_count(experts)
        passes = torch.zeros(LAYERS, experts, dtype=torch.int32, device="cuda")
        model_shards = torch.ones(LAYERS, k, experts, dtype=torch.int32, device="cuda")

        def fold():
            passes.add_(model_shards.sum(1, dtype=torch.int32))
            model_shards.zero_()

        print(f"{LAYERS} layers x {experts} experts, K={k}: "
              f"{bench.graph_time_us(fold, calls_per_graph=5):.2f} captured")


if __name__ == "__main__":
    main()
