# SPDX-License-Identifier: Apache-2.0
"""Probe for the speed issue (sharded load counters): which way of counting
expert load, and of folding the counts, measures best on the H200.

Not a fork file: one standalone Triton kernel with the fork's map logic
(valid-id masking, replica hash, device flag) and switches for how it
counts, timed under CUDA-graph replay, recording on and off, in one run:

- `row`: one atomic per id into the layer's row, default semantics
  (PR #36261), 256-id tiles;
- `head`: HEAD's counting (the per-tile histogram from 512-id tiles up,
  one atomic per id below), default semantics;
- `shardK`: one relaxed atomic per id into shard `pid % K` of K copies of
  the row, 256-id tiles; the fold happens elsewhere (in `EplbState.step`);
- `shardK+hist`: HEAD's tiles and histogram, relaxed, into K shards;
- `ticketK`: `shardK`, then a ticket counter: the last program to finish
  sums the shards it used into the row and zeroes them (upstream's shapes
  kept, no fold in `step`);
- the per-step fold `pass += shards.sum(1); shards.zero_()` over every
  layer of a model, eager and captured, at 61 layers x 288 and x 4600.

Every variant's counts are checked against torch.bincount before timing.

    python probe.py > probe.txt
"""

import sys

import torch
import triton
import triton.language as tl

TOKENS = [1, 16, 128, 512, 2048, 8192, 32768]
TOP_K = 8
SHAPES = {"256->288": (256, 288), "128->128": (128, 128)}


@triton.jit
def _probe_kernel(
    ids_ptr, out_ptr, l2p_ptr, replica_count_ptr, load_ptr, flag_ptr, ticket_ptr,
    numel, num_logical, map_slots, num_physical, top_k,
    NUM_SHARDS: tl.constexpr, RELAXED: tl.constexpr, HIST_BINS: tl.constexpr,
    TICKET: tl.constexpr, FOLD_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = offs < numel
    logical = tl.load(ids_ptr + offs, mask=in_range, other=-1).to(tl.int64)
    valid = in_range & (logical >= 0) & (logical < num_logical)
    row = tl.where(valid, logical, 0)
    replicas = tl.load(replica_count_ptr + row, mask=valid, other=1)
    replicas = tl.minimum(tl.maximum(replicas, 1), map_slots)
    token = offs // top_k
    replica = (((token * 2654435769) & 0xFFFFFFFF) >> 16) % replicas
    physical = tl.load(l2p_ptr + row * map_slots + replica, mask=valid, other=-1)
    tl.store(out_ptr + offs, physical.to(out_ptr.dtype.element_ty), mask=in_range)

    if tl.load(flag_ptr) != 0:
        counted = valid & (physical >= 0) & (physical < num_physical)
        shard = load_ptr + (pid % NUM_SHARDS).to(tl.int64) * num_physical
        if HIST_BINS > 0:
            bins = tl.where(counted, physical, HIST_BINS - 1).to(tl.int32)
            per_expert = tl.histogram(bins, HIST_BINS)
            experts = tl.arange(0, HIST_BINS)
            hit = (per_expert > 0) & (experts < num_physical)
            if RELAXED:
                tl.atomic_add(shard + experts, per_expert, mask=hit, sem="relaxed")
            else:
                tl.atomic_add(shard + experts, per_expert, mask=hit)
        else:
            at = shard + tl.where(counted, physical, 0)
            if RELAXED:
                tl.atomic_add(at, 1, mask=counted, sem="relaxed")
            else:
                tl.atomic_add(at, 1, mask=counted)
        if TICKET:
            # Release this program's counts, then the last one in folds.
            finished = tl.atomic_add(ticket_ptr, 1, sem="acq_rel")
            if finished == tl.num_programs(0) - 1:
                used = tl.minimum(tl.num_programs(0), NUM_SHARDS)
                row_ptr = load_ptr + NUM_SHARDS * num_physical
                for start in range(0, num_physical, FOLD_BLOCK):
                    experts = start + tl.arange(0, FOLD_BLOCK)
                    inside = experts < num_physical
                    total = tl.zeros([FOLD_BLOCK], dtype=tl.int32)
                    for k in range(0, used):
                        cell = load_ptr + k * num_physical + experts
                        total += tl.load(cell, mask=inside, other=0, cache_modifier=".cg")
                        tl.store(cell, 0, mask=inside)
                    old = tl.load(row_ptr + experts, mask=inside, other=0)
                    tl.store(row_ptr + experts, old + total, mask=inside)
                tl.store(ticket_ptr, 0)


def head_tiles(numel):
    """HEAD's tile sizing (lean launch): block, histogram on, warps."""
    min_block = 512 if numel >= 32768 else 256
    per_program = triton.next_power_of_2((numel + 131) // 132)
    block = min(2048, max(min_block, per_program))
    return block, block >= 512, 16 if block >= 1024 else (8 if block >= 512 else 4)


class Variant:
    def __init__(self, name, shards=1, relaxed=False, hist=False, ticket=False):
        self.name, self.shards, self.relaxed = name, shards, relaxed
        self.hist, self.ticket = hist, ticket

    def buffers(self, num_physical, device):
        rows = self.shards + (1 if self.ticket else 0)
        load = torch.zeros(rows, num_physical, dtype=torch.int32, device=device)
        ticket = torch.zeros(1, dtype=torch.int32, device=device)
        return load, ticket

    def call(self, ids, out, l2p, counts, load, ticket, flag, num_physical):
        numel = ids.numel()
        if self.hist:
            block, use_hist, warps = head_tiles(numel)
        else:
            block, use_hist, warps = 256, False, 4
        bins = triton.next_power_of_2(num_physical + 1) if use_hist else 0
        grid = (triton.cdiv(numel, block),)
        _probe_kernel[grid](
            ids, out, l2p, counts, load, flag, ticket,
            numel, counts.shape[0], l2p.shape[1], num_physical, TOP_K,
            NUM_SHARDS=self.shards, RELAXED=self.relaxed, HIST_BINS=bins,
            TICKET=self.ticket, FOLD_BLOCK=256, BLOCK=block, num_warps=warps,
        )

    def counts_of(self, load):
        return load[-1] if self.ticket else load.sum(0)


VARIANTS = [
    Variant("row"),
    Variant("head", hist=True),
    Variant("shard16", 16, relaxed=True),
    Variant("shard64", 64, relaxed=True),
    Variant("shard256", 256, relaxed=True),
    Variant("shard64+hist", 64, relaxed=True, hist=True),
    Variant("ticket64", 64, relaxed=True, ticket=True),
    Variant("ticket16", 16, relaxed=True, ticket=True),
]


def workload(shape, routing, tokens, device):
    num_logical, num_physical = SHAPES[shape]
    gen = torch.Generator().manual_seed(tokens)
    owners = list(range(num_logical)) + list(range(num_physical - num_logical))
    l2p = torch.full((num_logical, 1024), -1, dtype=torch.int64)
    counts = torch.zeros(num_logical, dtype=torch.int64)
    for physical, logical in enumerate(owners):
        l2p[logical, counts[logical]] = physical
        counts[logical] += 1
    weights = torch.ones(num_logical)
    if routing == "skewed":
        weights = 1.0 / torch.arange(1, num_logical + 1).float() ** 1.2
    ids = torch.multinomial(weights.expand(tokens, -1), TOP_K, generator=gen)
    return ids.to(torch.int32).to(device), l2p.to(device), counts.to(device)


def graph_us(call, per_graph=20, replays=20):
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(per_graph):
            call()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / (per_graph * replays)


def kernel_table(device):
    names = [v.name for v in VARIANTS]
    print("graph_us per call; rec = recording, skip = recording off")
    print(f"{'shape':>9} {'routing':>8} {'tokens':>6} " + " ".join(
        f"{n + ' rec':>17} {n + ' skip':>17}" for n in names))
    for shape in SHAPES:
        num_physical = SHAPES[shape][1]
        for routing in ("uniform", "skewed"):
            for tokens in TOKENS:
                ids, l2p, counts = workload(shape, routing, tokens, device)
                out = torch.empty_like(ids)
                cells = []
                for variant in VARIANTS:
                    load, ticket = variant.buffers(num_physical, device)
                    on = torch.ones((), dtype=torch.bool, device=device)
                    off = torch.zeros((), dtype=torch.bool, device=device)
                    variant.call(ids, out, l2p, counts, load, ticket, on, num_physical)
                    torch.cuda.synchronize()
                    want = torch.bincount(out.flatten().long(), minlength=num_physical)
                    got = variant.counts_of(load).long()
                    if not torch.equal(got, want):
                        sys.exit(f"{variant.name} {shape} {routing} {tokens}: counts differ")
                    for flag in (on, off):
                        cells.append(graph_us(lambda: variant.call(
                            ids, out, l2p, counts, load, ticket, flag, num_physical)))
                print(f"{shape:>9} {routing:>8} {tokens:>6} "
                      + " ".join(f"{c:17.2f}" for c in cells), flush=True)


def fold_table(device):
    print("\nper-step fold of a model's shards into expert_load_pass "
          "(pass += shards.sum(1); shards.zero_()), us per step")
    print(f"{'layers':>6} {'shards':>6} {'experts':>7} {'MB':>6} {'graph_us':>9} {'eager_us':>9}")
    for layers, experts in ((61, 288), (61, 4600), (48, 128)):
        for shards in (16, 64, 256):
            passes = torch.zeros(layers, experts, dtype=torch.int64, device=device)
            sharded = torch.randint(0, 9, (layers, shards, experts), dtype=torch.int32,
                                    device=device)
            want = passes + sharded.sum(1)

            def fold():
                passes.add_(sharded.sum(1))
                sharded.zero_()

            fold()
            torch.cuda.synchronize()
            assert torch.equal(passes, want)
            captured = graph_us(fold, per_graph=5, replays=20)
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(50):
                fold()
            end.record()
            end.synchronize()
            eager = start.elapsed_time(end) * 1000 / 50
            mb = sharded.numel() * 4 / 2**20
            print(f"{layers:>6} {shards:>6} {experts:>7} {mb:6.2f} {captured:9.2f} {eager:9.2f}",
                  flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    kernel_table("cuda")
    fold_table("cuda")
