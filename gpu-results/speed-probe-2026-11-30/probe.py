# SPDX-License-Identifier: Apache-2.0
"""Probe for the two targets the sharded counters (patch 13) missed on the
H200: recording at 32768 tokens within 1.5x the PR kernel's skipping, and
skipping within 1.05x the PR's at 1 and 16 tokens.

Not a fork file: one standalone Triton kernel with HEAD's map logic and
switches for what the issue's numbers point at, timed under CUDA-graph
replay, recording on and off, the median of three interleaved rounds (the
1-token cells moved by 0.2 us between runs before):

- `pr`: PR #36261's counting: one default-semantics atomic per id into the
  layer's row, the flag folded into the atomic's mask, 256-id tiles;
- `head`: patch 13: relaxed atomics into shard `pid % 64`, plus the
  padding/row-window loads of patches 7 and 12, flag in the mask;
- `branch`: `head` with the flag read as a scalar branch, so a skipping
  call issues neither the padding loads nor the masked atomics;
- `b<B>w<W>`: `branch` with B-id tiles and W warps (more ids per thread);
- `k<K>`: `branch` with K shards;
- `hist<B>w<W>`: `branch`, counting through a per-tile histogram of B ids
  (Triton's `tl.histogram`), one atomic per expert hit: fewer atomics once a
  tile holds many more ids than there are experts.

Every variant's counts are checked against torch.bincount before timing.

    python probe.py round1 > round1.txt   # (3 rounds)
    python probe.py round2 > round2.txt   # (5 rounds)
"""

import statistics
import sys

import torch
import triton
import triton.language as tl

TOKENS = [1, 16, 128, 512, 2048, 8192, 32768]
TOP_K = 8
SHAPES = {"256->288": (256, 288), "128->128": (128, 128)}


@triton.jit
def _probe_kernel(
    ids_ptr, out_ptr, l2p_ptr, replica_count_ptr, load_ptr, flag_ptr, real_ptr,
    numel, num_logical, map_slots, num_physical, num_shards, top_k,
    count_first, count_end,
    RELAXED: tl.constexpr, REAL_ONLY: tl.constexpr, BRANCH: tl.constexpr,
    HIST_BINS: tl.constexpr, NARROW: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = offs < numel
    logical = tl.load(ids_ptr + offs, mask=in_range, other=-1).to(tl.int64)
    valid = in_range & (logical >= 0) & (logical < num_logical)
    row = tl.where(valid, logical, 0)
    replicas = tl.load(replica_count_ptr + row, mask=valid, other=1)
    replicas = tl.minimum(tl.maximum(replicas, 1), map_slots)
    if NARROW:
        # numel < 2**31: token and hash in 32 bits, no 64-bit division.
        token = offs.to(tl.int32) // top_k
        hashed = token.to(tl.uint32) * 2654435769
        replica = ((hashed >> 16) % replicas.to(tl.uint32)).to(tl.int64)
    else:
        token = offs // top_k
        replica = (((token * 2654435769) & 0xFFFFFFFF) >> 16) % replicas
    physical = tl.load(l2p_ptr + row * map_slots + replica, mask=valid, other=-1)
    tl.store(out_ptr + offs, physical.to(out_ptr.dtype.element_ty), mask=in_range)

    record = tl.load(flag_ptr) != 0
    if BRANCH:
        if record:
            counted = valid & (physical >= 0) & (physical < num_physical)
            if REAL_ONLY:
                own = (token >= count_first) & (token < count_end)
                counted = counted & own & (token - count_first < tl.load(real_ptr))
            shard = load_ptr + (pid % num_shards) * num_physical
            if HIST_BINS > 0:
                bins = tl.where(counted, physical, HIST_BINS - 1).to(tl.int32)
                per_expert = tl.histogram(bins, HIST_BINS)
                experts = tl.arange(0, HIST_BINS)
                hit = (per_expert > 0) & (experts < num_physical)
                tl.atomic_add(shard + experts, per_expert, mask=hit, sem="relaxed")
            else:
                tl.atomic_add(shard + tl.where(counted, physical, 0), 1, mask=counted,
                              sem="relaxed")
    else:
        counted = valid & record & (physical >= 0) & (physical < num_physical)
        if REAL_ONLY:
            own = (token >= count_first) & (token < count_end)
            counted = counted & own & (token - count_first < tl.load(real_ptr))
        shard = load_ptr + (pid % num_shards) * num_physical
        at = shard + tl.where(counted, physical, 0)
        if RELAXED:
            tl.atomic_add(at, 1, mask=counted, sem="relaxed")
        else:
            tl.atomic_add(at, 1, mask=counted)


class Variant:
    def __init__(self, name, shards=64, relaxed=True, real_only=True, branch=True,
                 block=256, warps=4, hist=False, narrow=False):
        self.name, self.shards, self.relaxed = name, shards, relaxed
        self.real_only, self.branch, self.block = real_only, branch, block
        self.warps, self.hist, self.narrow = warps, hist, narrow

    def call(self, ids, out, l2p, counts, load, flag, real, num_physical):
        numel = ids.numel()
        bins = triton.next_power_of_2(num_physical + 1) if self.hist else 0
        tokens = numel // TOP_K
        _probe_kernel[(triton.cdiv(numel, self.block),)](
            ids, out, l2p, counts, load, flag, real,
            numel, counts.shape[0], l2p.shape[1], num_physical, self.shards, TOP_K,
            0, tokens,
            RELAXED=self.relaxed, REAL_ONLY=self.real_only, BRANCH=self.branch,
            HIST_BINS=bins, NARROW=self.narrow, BLOCK=self.block, num_warps=self.warps,
        )


ROUND1 = [
    Variant("pr", shards=1, relaxed=False, real_only=False, branch=False),
    Variant("head", branch=False),
    Variant("branch"),
    Variant("b1024w4", block=1024),
    Variant("b1024w8", block=1024, warps=8),
    Variant("b2048w8", block=2048, warps=8),
    Variant("k128", shards=128),
    Variant("k256", shards=256),
    Variant("k256b1024w8", shards=256, block=1024, warps=8),
    Variant("hist2048w8", block=2048, warps=8, hist=True),
    Variant("hist4096w16", block=4096, warps=16, hist=True),
    Variant("hist8192w16", block=8192, warps=16, hist=True),
]
# Round 2: round 1 pointed at the 64-bit division in the map (token index,
# replica modulo), so the same counting with 32-bit map math (`n`).
ROUND2 = [
    Variant("pr", shards=1, relaxed=False, real_only=False, branch=False),
    Variant("head", branch=False),
    Variant("branch"),
    Variant("n", branch=False, narrow=True),
    Variant("n-branch", narrow=True),
    Variant("n-k128", shards=128, branch=False, narrow=True),
    Variant("n-k256", shards=256, branch=False, narrow=True),
    Variant("n-b512w4", block=512, branch=False, narrow=True),
    Variant("n-b1024w8", block=1024, warps=8, branch=False, narrow=True),
    Variant("n-w2", warps=2, branch=False, narrow=True),
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


def graph_us(call, per_graph=40, replays=40):
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


def main(device="cuda"):
    rounds_of = {"round1": (ROUND1, 3), "round2": (ROUND2, 5)}
    VARIANTS, repeats = rounds_of[sys.argv[1] if len(sys.argv) > 1 else "round2"]
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    names = [v.name for v in VARIANTS]
    print(f"graph_us per call, median of {repeats} interleaved rounds; rec = recording, skip = off")
    print(f"{'shape':>9} {'routing':>8} {'tokens':>6} " + " ".join(
        f"{n + ' rec':>16} {n + ' skip':>16}" for n in names))
    on = torch.ones((), dtype=torch.bool, device=device)
    off = torch.zeros((), dtype=torch.bool, device=device)
    for shape in SHAPES:
        num_physical = SHAPES[shape][1]
        for routing in ("uniform", "skewed"):
            for tokens in TOKENS:
                ids, l2p, counts = workload(shape, routing, tokens, device)
                real = torch.tensor(tokens, dtype=torch.int32, device=device)
                out = torch.empty_like(ids)
                calls = []
                for variant in VARIANTS:
                    load = torch.zeros(variant.shards, num_physical, dtype=torch.int32,
                                       device=device)
                    variant.call(ids, out, l2p, counts, load, on, real, num_physical)
                    torch.cuda.synchronize()
                    want = torch.bincount(out.flatten().long(), minlength=num_physical)
                    if not torch.equal(load.sum(0).long(), want):
                        sys.exit(f"{variant.name} {shape} {routing} {tokens}: counts differ")
                    for flag in (on, off):
                        calls.append(lambda v=variant, load=load, flag=flag: v.call(
                            ids, out, l2p, counts, load, flag, real, num_physical))
                rounds = [[graph_us(c) for c in calls] for _ in range(repeats)]
                cells = [statistics.median(r[i] for r in rounds) for i in range(len(calls))]
                print(f"{shape:>9} {routing:>8} {tokens:>6} "
                      + " ".join(f"{c:16.2f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
