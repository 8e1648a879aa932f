# SPDX-License-Identifier: Apache-2.0
"""The current line's map+record against upstream's own kernel, side by side
in one process, under whichever Triton is first on the path: the release's
router (`upstream`; from 0.34 with its own eplb_triton.py, each revision
with its own), the commit with relaxed atomics and 32-bit replica
math (`relaxed`), the per-program shards (`shards`) and HEAD (the lean
launch), these two counting into the [K, num_physical] shards EplbState
gives each layer (K from the fork's formula for 61 layers).
Cells are the median of three interleaved rounds of CUDA-graph replay (us
per call), then eager host time per call. Every revision's output is
checked against upstream's (the same logical expert: from the line's
patch 2 on, the replica may differ), and the counts against torch.bincount,
first.

Run on the GPU machine by gpu-results/gpu-run.sh, from a current-line
bundle (`make gpu-bundle`, build/gpu/<release>).
"""

import ast
import linecache
import statistics
import sys
import types
from pathlib import Path

import torch
import triton

sys.path.insert(0, "benchmarks/kernels")
import benchmark_eplb_map_record as bench  # noqa: E402

LAYERS = 61
ROUNDS = 3
REVISIONS = ("upstream", "relaxed", "shards", "head")


def shard_count(num_physical: int) -> int:
    """The fork's formula, read from its eplb_state.py rather than retyped."""
    source = Path("vllm/distributed/eplb/eplb_state.py").read_text()
    namespace: dict = {}
    tree = ast.parse(source)
    (node,) = [n for n in tree.body if getattr(n, "name", "") == "expert_load_shard_count"]
    exec(compile(ast.Module([node], type_ignores=[]), "eplb_state.py", "exec"), namespace)
    return namespace["expert_load_shard_count"](LAYERS, num_physical)


SHARED = "vllm.model_executor.layers.fused_moe.eplb_triton"


def load(name: str):
    """Revision `name` of the router, importing its own eplb_triton.py where
    the release has one (0.34 on): the router binds it at import."""
    # The bundle keeps the release's own router as its base revision.
    stem = "base" if name == "upstream" else name
    shared = Path(f"revisions/{stem}_eplb_triton.py")
    if shared.exists():
        module = types.ModuleType(SHARED)
        module.__file__ = f"<{name}:eplb_triton.py>"
        source = shared.read_text()
        lines = source.splitlines(keepends=True)
        linecache.cache[module.__file__] = (len(source), None, lines, module.__file__)
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        sys.modules[SHARED] = module
    return bench.load_revision(name, Path(f"revisions/{stem}.py").read_text())


def logical_of(physical: torch.Tensor, l2p: torch.Tensor) -> torch.Tensor:
    """The logical expert of each physical id (-1 stays -1)."""
    table = torch.full((int(l2p.max()) + 2,), -1, dtype=torch.long, device=l2p.device)
    rows = torch.arange(l2p.shape[0], device=l2p.device).unsqueeze(1).expand_as(l2p)
    placed = l2p >= 0
    table[l2p[placed]] = rows[placed]
    return table[physical.long()]


def median_rounds(calls: list) -> list[float]:
    rounds = [[bench.graph_time_us(c) for c in calls] for _ in range(ROUNDS)]
    return [statistics.median(r[i] for r in rounds) for i in range(len(calls))]


def main() -> None:
    revisions = {name: load(name) for name in REVISIONS}
    flags = {r: torch.tensor(r, dtype=torch.bool, device="cuda") for r in (True, False)}
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    columns = [*REVISIONS, "empty"]
    print(f"graph_us per call, median of {ROUNDS} rounds, rec / skip; K shards for HEAD")
    print(
        f"{'shape':>9} {'routing':>8} {'tokens':>6} {'K':>3} "
        + " ".join(f"{c + ' rec':>13} {c + ' skip':>13}" for c in columns)
        + f" {'head rec/up skip':>16} {'head skip/up skip':>17} {'head rec/up rec':>15}"
    )
    host_rows = []
    for shape in bench.SHAPES:
        num_physical = bench.SHAPES[shape][1]
        shards = shard_count(num_physical)
        for routing in ("uniform", "skewed"):
            for tokens in bench.TOKENS:
                work = bench.make_workload(shape, routing, tokens, "cuda")
                loads = {
                    name: torch.zeros(shards, num_physical, dtype=torch.int32, device="cuda")
                    if name in ("shards", "head")
                    else torch.zeros_like(work.load)
                    for name in REVISIONS
                }
                calls = {}
                for record in (True, False):
                    for name in REVISIONS:
                        calls[name, record] = lambda fn=revisions[name], load=loads[name], f=flags[
                            record
                        ], w=work: fn(w.topk_ids, load, w.l2p, w.counts, f)
                    calls["empty", record] = lambda w=work: bench.empty_launch(w.topk_ids)
                outs = {name: calls[name, True]() for name in REVISIONS}
                torch.cuda.synchronize()
                upstream_logical = logical_of(outs["upstream"], work.l2p)
                for name in REVISIONS:
                    counted = loads[name].sum(0) if loads[name].dim() == 2 else loads[name]
                    want = torch.bincount(outs[name].flatten().long(), minlength=num_physical)
                    if not torch.equal(logical_of(outs[name], work.l2p), upstream_logical):
                        sys.exit(f"{name} {shape} {routing} {tokens}: maps unlike upstream")
                    if not torch.equal(counted.long(), want):
                        sys.exit(f"{name} {shape} {routing} {tokens}: counts differ")
                keys = [(c, r) for c in columns for r in (True, False)]
                cells = dict(zip(keys, median_rounds([calls[k] for k in keys]), strict=True))
                up_skip, up_rec = cells["upstream", False], cells["upstream", True]
                print(
                    f"{shape:>9} {routing:>8} {tokens:>6} {shards:>3} "
                    + " ".join(f"{cells[k]:13.2f}" for k in keys)
                    + f" {cells['head', True] / up_skip:16.2f}"
                    f" {cells['head', False] / up_skip:17.2f}"
                    f" {cells['head', True] / up_rec:15.2f}",
                    flush=True,
                )
                host_rows.append(bench.host_times_us(calls, 100, 7, torch.cuda.synchronize))
    print("\nhost_us per eager call, median over shapes, routings, sizes, rec and skip")
    empty = statistics.median(row["empty", r] for row in host_rows for r in (True, False))
    for column in columns:
        value = statistics.median(row[column, r] for row in host_rows for r in (True, False))
        print(f"{column:>9}: {value:6.1f} ({value / empty:.2f}x empty)")


if __name__ == "__main__":
    main()
