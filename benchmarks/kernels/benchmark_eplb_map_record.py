# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EPLB map+record, revision against revision, side by side in one process.

Each revision of `eplb_map_to_physical_and_record` is loaded from the fork's
git history (`git show REV:base_router.py`), never retyped: by default the
v0.19.1 base (torch.compile'd gather + scatter_add), the commit that brought
PR #36261's Triton kernel, and HEAD. An empty Triton launch is the floor.

Measured per call: CUDA-graph replay time (many calls captured in one graph)
and eager host time (Python + launch, without waiting for the GPU), with
recording on and off, for top-8 routing over 256 -> 288 and 128 -> 128
experts, uniform and skewed (Zipf-like) routing. Prints a table and writes
CSV (and a PNG with --plot, where matplotlib is installed).

    python benchmarks/kernels/benchmark_eplb_map_record.py --csv out.csv
    # where a revision's source is a file rather than a commit:
    python benchmarks/kernels/benchmark_eplb_map_record.py \\
        --revision base=base.py --revision pr=pr.py --revision head=head.py
    # CPU smoke run under Triton's interpreter (no speed is asserted):
    TRITON_INTERPRET=1 python benchmarks/kernels/benchmark_eplb_map_record.py --smoke
"""

import argparse
import csv
import inspect
import linecache
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from vllm.triton_utils import tl, triton

ROUTER_PATH = "vllm/model_executor/layers/fused_moe/router/base_router.py"
PR_SUBJECT = "^\\[EPLB\\] Fuse expert mapping and load recording"
DEFAULT_REVISIONS = {"base": "base/v0.19.1", "pr": f":/{PR_SUBJECT}", "head": "HEAD"}
TOKENS = [1, 16, 128, 512, 2048, 8192, 32768]
TOP_K = 8
SHAPES = {"256->288": (256, 288), "128->128": (128, 128)}


@triton.jit
def _empty_kernel(x_ptr, n, BLOCK_SIZE: tl.constexpr):
    pass


def empty_launch(topk_ids: torch.Tensor, *_ignored) -> torch.Tensor:
    """The floor: one Triton launch that does nothing."""
    _empty_kernel[(1,)](topk_ids, topk_ids.numel(), BLOCK_SIZE=256)
    return topk_ids


def load_revision(name: str, source: str):
    """Execute one revision of base_router.py as a module of its own and
    return its map+record entry point."""
    module = types.ModuleType(f"eplb_revision_{name}")
    module.__file__ = f"<{name}:{ROUTER_PATH}>"
    # Triton reads a kernel's source through linecache.
    linecache.cache[module.__file__] = (
        len(source),
        None,
        source.splitlines(keepends=True),
        module.__file__,
    )
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    # Revisions with a module-level Triton launcher expose it; it is also
    # what the CUDA path calls, and the only path under the interpreter.
    return getattr(module, "eplb_map_and_record_triton", None) or (
        module.eplb_map_to_physical_and_record
    )


def revision_source(fork: Path, rev: str) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(fork), *args], check=True, capture_output=True, text=True
        ).stdout

    commit = git("rev-parse", "--verify", rev).strip()
    return git("show", f"{commit}:{ROUTER_PATH}")


@dataclass
class Workload:
    shape: str
    routing: str
    tokens: int
    topk_ids: torch.Tensor
    load: torch.Tensor
    l2p: torch.Tensor
    counts: torch.Tensor


def make_workload(shape: str, routing: str, tokens: int, device: str) -> Workload:
    num_logical, num_physical = SHAPES[shape]
    gen = torch.Generator().manual_seed(tokens)
    # The hottest experts (lowest ids under Zipf) get the redundant slots.
    physical_to_logical = list(range(num_logical))
    physical_to_logical += list(range(num_physical - num_logical))
    l2p = torch.full((num_logical, 1024), -1, dtype=torch.int64)
    counts = torch.zeros(num_logical, dtype=torch.int64)
    for physical, logical in enumerate(physical_to_logical):
        l2p[logical, counts[logical]] = physical
        counts[logical] += 1
    if routing == "uniform":
        weights = torch.ones(num_logical)
    else:  # Zipf-like popularity, exponent 1.2
        weights = 1.0 / torch.arange(1, num_logical + 1).float() ** 1.2
    topk_ids = torch.multinomial(
        weights.expand(tokens, -1), TOP_K, replacement=False, generator=gen
    ).to(torch.int32)
    return Workload(
        shape,
        routing,
        tokens,
        topk_ids.to(device),
        torch.zeros(num_physical, dtype=torch.int32, device=device),
        l2p.to(device),
        counts.to(device),
    )


def call_with_flag(fn, work: Workload, flag: torch.Tensor):
    """Call any revision: the base has no record flag (it always records)."""
    kwargs = {}
    if "record_enabled" in inspect.signature(fn).parameters:
        kwargs["record_enabled"] = flag
    return lambda: fn(work.topk_ids, work.load, work.l2p, work.counts, **kwargs)


def graph_time_us(call, calls_per_graph: int = 20, replays: int = 20) -> float:
    for _ in range(3):  # compile and warm up outside the capture
        call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls_per_graph):
            call()
    graph.replay()
    start, end = (
        torch.cuda.Event(enable_timing=True),
        torch.cuda.Event(enable_timing=True),
    )
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / (replays * calls_per_graph)


def host_times_us(calls: dict, calls_per_round: int, rounds: int, sync) -> dict:
    """Eager host time per call (Python + launch, not waiting for the GPU).
    The callables take turns round by round, so a change in the host's speed
    during the run hits all of them alike; each gets its median round."""
    rounds_us: dict = {key: [] for key in calls}
    for call in calls.values():
        call()
    sync()
    for _ in range(rounds):
        for key, call in calls.items():
            started = time.perf_counter()
            for _ in range(calls_per_round):
                call()
            rounds_us[key].append(
                (time.perf_counter() - started) * 1e6 / calls_per_round
            )
            sync()
    return {key: statistics.median(times) for key, times in rounds_us.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fork", default=".", help="git checkout of the fork")
    parser.add_argument(
        "--revision",
        action="append",
        default=[],
        metavar="NAME=REV_OR_FILE",
        help="a revision to compare: a git revision, or a file holding "
        "base_router.py (default: base, pr, head from the fork's history)",
    )
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    parser.add_argument(
        "--smoke", action="store_true", help="tiny CPU run, interpreter"
    )
    parser.add_argument("--csv", help="write the rows here")
    parser.add_argument("--plot", help="write a PNG plot here (needs matplotlib)")
    args = parser.parse_args()

    pairs = [r.split("=", 1) for r in args.revision] or list(DEFAULT_REVISIONS.items())
    revisions = {}
    for name, rev in pairs:
        source = (
            Path(rev).read_text()
            if Path(rev).is_file()
            else revision_source(Path(args.fork), rev)
        )
        revisions[name] = load_revision(name, source)
    revisions["empty"] = empty_launch

    device = "cpu" if args.smoke else "cuda"
    tokens = [1, 16] if args.smoke else [int(t) for t in args.tokens.split(",")]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    flags = {
        record: torch.tensor(record, dtype=torch.bool, device=device)
        for record in (True, False)
    }
    rows = []
    for shape in SHAPES:
        for routing in ("uniform", "skewed"):
            for num_tokens in tokens:
                work = make_workload(shape, routing, num_tokens, device)
                calls = {
                    (name, record): call_with_flag(fn, work, flags[record])
                    for name, fn in revisions.items()
                    for record in (True, False)
                }
                host_us = host_times_us(
                    calls, 3 if args.smoke else 100, 1 if args.smoke else 7, sync
                )
                for (name, record), call in calls.items():
                    rows.append(
                        {
                            "shape": shape,
                            "routing": routing,
                            "tokens": num_tokens,
                            "revision": name,
                            "record": record,
                            "host_us": host_us[name, record],
                            "graph_us": None if args.smoke else graph_time_us(call),
                        }
                    )
    print_table(rows)
    if args.csv:
        write_csv(rows, args.csv)
    if args.plot:
        plot(rows, args.plot)
    return 0


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def print_table(rows: list[dict]) -> None:
    names = list(dict.fromkeys(r["revision"] for r in rows))
    index = {
        (r["shape"], r["routing"], r["tokens"], r["revision"], r["record"]): r
        for r in rows
    }
    metric = "graph_us" if rows[0]["graph_us"] is not None else "host_us"
    print(f"\n{metric} per call (rec = recording, skip = recording off)")
    header = ["shape", "routing", "tokens"]
    for name in names:
        header += [f"{name} rec", f"{name} skip"]
    print(" | ".join(f"{h:>12}" for h in header))
    for shape, routing, num_tokens in dict.fromkeys(
        (r["shape"], r["routing"], r["tokens"]) for r in rows
    ):
        cells = [shape, routing, str(num_tokens)]
        for name in names:
            for record in (True, False):
                cells.append(
                    f"{index[(shape, routing, num_tokens, name, record)][metric]:.2f}"
                )
        print(" | ".join(f"{c:>12}" for c in cells))
    if metric == "graph_us":
        print("\nhost_us per eager call, median over shapes, routings and sizes")
        host = {
            name: statistics.median(r["host_us"] for r in rows if r["revision"] == name)
            for name in names
        }
        floor = host.get("empty")
        for name in names:
            ratio = f" ({host[name] / floor:.2f}x empty)" if floor else ""
            print(f"  {name:>10}: {host[name]:.1f}{ratio}")


def plot(rows: list[dict], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    metric = "graph_us" if rows[0]["graph_us"] is not None else "host_us"
    panels = list(dict.fromkeys((r["shape"], r["routing"]) for r in rows))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), squeeze=False
    )
    for ax, (shape, routing) in zip(axes[0], panels):
        for name in dict.fromkeys(r["revision"] for r in rows):
            for record, style in ((True, "-"), (False, "--")):
                points = [
                    (r["tokens"], r[metric])
                    for r in rows
                    if (r["shape"], r["routing"], r["revision"], r["record"])
                    == (shape, routing, name, record)
                ]
                xs, ys = zip(*points)
                ax.plot(
                    xs,
                    ys,
                    style,
                    marker="o",
                    label=f"{name} {'rec' if record else 'skip'}",
                )
        ax.set(xscale="log", yscale="log", xlabel="tokens (top-8)", ylabel=f"{metric}",
               title=f"{shape}, {routing}")  # fmt: skip
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
