# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EPLB's share of a MoE layer forward at prefill sizes, revision against
revision.

One MoE layer in plain torch: router GEMM, softmax top-k, EPLB map+record
(each revision of base_router.py from the fork's history, or none), then
the experts as grouped GEMMs (gate/up, SiLU-and-mul, down, weighted
combine) over the physical experts, plus the shared expert where the model
has one. Whole forwards are captured in CUDA graphs and replayed, so host
time does not count. With expert parallelism each rank computes about as
many (token, expert) pairs as it routes, so one GPU running the whole layer
on its tokens is that rank's work without the all-to-all: a conservative
denominator.

Reported per model shape, tokens, revision and recording on/off: the layer
forward (us), the map+record call alone captured the same way (us), its
share of the layer, and its share of the expert GEMMs' FLOP floor at the
GPU's peak (a layer with perfect kernels: the strictest denominator).

    python benchmarks/kernels/benchmark_eplb_moe_layer.py --csv layer.csv
    python benchmarks/kernels/benchmark_eplb_moe_layer.py \\
        --revision base=base.py --revision head=head.py
    # CPU smoke run under Triton's interpreter (tiny shapes, nothing timed):
    TRITON_INTERPRET=1 python benchmarks/kernels/benchmark_eplb_moe_layer.py --smoke
"""

import argparse
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_eplb_map_record import (  # noqa: E402
    DEFAULT_REVISIONS,
    call_with_flag,
    graph_time_us,
    load_revision,
    revision_source,
    write_csv,
)

TOKENS = [2048, 4096, 8192, 16384, 32768]


@dataclass(frozen=True)
class LayerShape:
    hidden: int
    intermediate: int
    logical_experts: int
    physical_experts: int
    top_k: int
    shared_experts: int


# Published configs (hidden_size, moe_intermediate_size, routed experts,
# experts per token, shared experts); the redundant experts are EPLB's.
SHAPES = {
    "Qwen3-30B-A3B": LayerShape(2048, 768, 128, 144, 8, 0),
    "DeepSeek-V3": LayerShape(7168, 2048, 256, 288, 8, 1),
}
SMOKE_SHAPE = LayerShape(32, 16, 8, 10, 2, 1)


@dataclass
class EplbTensors:
    """What the router hands the map+record call, in the benchmark's names."""

    topk_ids: torch.Tensor
    load: torch.Tensor
    l2p: torch.Tensor
    counts: torch.Tensor


class MoELayer:
    def __init__(self, shape: LayerShape, tokens: int, device: str, dtype):
        gen = torch.Generator(device=device).manual_seed(tokens)
        s = shape

        def weight(*size):
            scale = size[-1] ** -0.5
            return torch.randn(*size, generator=gen, device=device, dtype=dtype) * scale

        self.shape = shape
        self.hidden = torch.randn(tokens, s.hidden, generator=gen, device=device)
        self.hidden = self.hidden.to(dtype)
        self.gate = weight(s.hidden, s.logical_experts)
        # Stored (experts, out, in) and used transposed: the layout grouped
        # GEMMs take for their second operand.
        self.w13 = weight(s.physical_experts, 2 * s.intermediate, s.hidden).mT
        self.w2 = weight(s.physical_experts, s.hidden, s.intermediate).mT
        shared = s.shared_experts * s.intermediate
        self.shared13 = weight(s.hidden, 2 * shared) if shared else None
        self.shared2 = weight(shared, s.hidden) if shared else None
        # Redundant slots go to logical experts 0.. (round robin), the layout
        # EPLB's policy gives the hottest experts.
        l2p = torch.full((s.logical_experts, 1024), -1, dtype=torch.int64)
        counts = torch.zeros(s.logical_experts, dtype=torch.int64)
        for physical in range(s.physical_experts):
            logical = physical % s.logical_experts
            l2p[logical, counts[logical]] = physical
            counts[logical] += 1
        self.eplb = EplbTensors(
            torch.empty(0),
            torch.zeros(s.physical_experts, dtype=torch.int32, device=device),
            l2p.to(device),
            counts.to(device),
        )
        self.out = torch.empty_like(self.hidden)
        self.use_grouped_mm = device == "cuda" and hasattr(torch, "_grouped_mm")

    def route(self) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax((self.hidden @ self.gate).float(), dim=-1)
        weights, ids = torch.topk(probs, self.shape.top_k, dim=-1)
        return weights, ids.to(torch.int32)

    def experts(self, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        s = self.shape
        flat = ids.flatten().to(torch.int64)
        order = torch.argsort(flat)
        token_of = order // s.top_k
        x = self.hidden[token_of]
        # Rows per physical expert without a host sync (graph-capturable).
        rows = torch.zeros(s.physical_experts, dtype=torch.int32, device=flat.device)
        rows.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
        ends = torch.cumsum(rows, 0, dtype=torch.int32)
        gate, up = self.grouped_mm(x, self.w13, ends).chunk(2, dim=-1)
        y = self.grouped_mm(F.silu(gate) * up, self.w2, ends)
        y = y * weights.flatten()[order].unsqueeze(-1).to(y.dtype)
        out = self.out.zero_().index_add_(0, token_of, y)
        if self.shared13 is not None:
            sg, su = (self.hidden @ self.shared13).chunk(2, dim=-1)
            out += (F.silu(sg) * su) @ self.shared2
        return out

    def grouped_mm(self, x, w, ends: torch.Tensor) -> torch.Tensor:
        """Rows [ends[e-1], ends[e]) of `x` times `w[e]`."""
        if self.use_grouped_mm:
            return torch._grouped_mm(x, w, offs=ends)
        # The smoke run: one matmul per expert (reads the ends on the host).
        starts = [0, *ends.tolist()[:-1]]
        return torch.cat(
            [x[a:b] @ w[e] for e, (a, b) in enumerate(zip(starts, ends.tolist()))]
        )

    def forward_call(self, map_and_record, flag: torch.Tensor):
        """The layer forward; `map_and_record` None runs it without EPLB
        (logical ids index the first physical experts)."""

        def forward():
            weights, ids = self.route()
            if map_and_record is not None:
                self.eplb.topk_ids = ids
                ids = call_with_flag(map_and_record, self.eplb, flag)()
            return self.experts(weights, ids)

        return forward

    def map_record_call(self, map_and_record, flag: torch.Tensor):
        self.eplb.topk_ids = self.route()[1]
        return call_with_flag(map_and_record, self.eplb, flag)


def layer_flops(shape: LayerShape, tokens: int) -> float:
    """The expert GEMMs' FLOPs (routed pairs and shared experts): a layer
    can take no less than this at the GPU's peak, whatever its kernels."""
    per_pair = 2 * 3 * shape.hidden * shape.intermediate
    return per_pair * tokens * (shape.top_k + shape.shared_experts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fork", default=".", help="git checkout of the fork")
    parser.add_argument(
        "--revision", action="append", default=[], metavar="NAME=REV_OR_FILE"
    )
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run")
    parser.add_argument("--csv", help="write the rows here")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="dense bf16 peak for the FLOP floor (H200: 989)",
    )
    args = parser.parse_args()

    pairs = [r.split("=", 1) for r in args.revision] or list(DEFAULT_REVISIONS.items())
    revisions = {
        name: load_revision(
            name,
            Path(rev).read_text()
            if Path(rev).is_file()
            else revision_source(Path(args.fork), rev),
        )
        for name, rev in pairs
    }
    device = "cpu" if args.smoke else "cuda"
    dtype = torch.float32 if args.smoke else torch.bfloat16
    shapes = {"smoke": SMOKE_SHAPE} if args.smoke else SHAPES
    tokens = [5, 64] if args.smoke else [int(t) for t in args.tokens.split(",")]
    rows = []
    for shape_name, shape in shapes.items():
        for num_tokens in tokens:
            layer = MoELayer(shape, num_tokens, device, dtype)
            cases = [("none", None, False)] + [
                (name, fn, record)
                for name, fn in revisions.items()
                for record in (True, False)
            ]
            for name, fn, record in cases:
                flag = torch.tensor(record, device=device)
                forward = layer.forward_call(fn, flag)
                row = {
                    "model": shape_name,
                    "tokens": num_tokens,
                    "revision": name,
                    "record": record,
                }
                if args.smoke:
                    layer.eplb.load.zero_()
                    out = forward()
                    assert torch.isfinite(out).all()
                    # Gated revisions record every routed id iff the flag is
                    # set (v0.19.1's function has no flag, and off CUDA it
                    # passes ids through).
                    if (
                        fn is not None
                        and "record_enabled" in inspect.signature(fn).parameters
                    ):
                        expected = num_tokens * shape.top_k if record else 0
                        recorded = int(layer.eplb.load.sum())
                        assert recorded == expected, (name, record, recorded)
                    row.update(
                        layer_us=None, eplb_us=None, share=None, floor_share=None
                    )
                else:
                    row["layer_us"] = graph_time_us(
                        forward, calls_per_graph=1, replays=10
                    )
                    row["eplb_us"] = (
                        graph_time_us(layer.map_record_call(fn, flag)) if fn else 0.0
                    )
                    row["share"] = row["eplb_us"] / row["layer_us"]
                    floor_us = layer_flops(shape, num_tokens) / args.peak_tflops / 1e6
                    row["floor_share"] = row["eplb_us"] / floor_us
                rows.append(row)
            del layer
            if device == "cuda":
                torch.cuda.empty_cache()
    print_table(rows)
    if args.csv:
        write_csv(rows, args.csv)
    return 0


def print_table(rows: list[dict]) -> None:
    head = ("model", "tokens", "revision", "record", "layer us", "eplb us", "share")
    print(
        "{:<15}{:>7}  {:<10}{:<7}{:>10}{:>9}{:>8}".format(*head)
        + "  share of the GEMM FLOP floor"
    )
    for r in rows:
        key = f"{r['model']:<15}{r['tokens']:>7}  {r['revision']:<10}"
        key += f"{str(r['record']):<7}"
        if r["layer_us"] is None:
            print(key + "  (smoke: not timed)")
        else:
            timed = f"{r['layer_us']:>10.1f}{r['eplb_us']:>9.2f}{r['share']:>8.2%}"
            print(key + timed + f"  {r['floor_share']:>8.2%}")


if __name__ == "__main__":
    sys.exit(main())
