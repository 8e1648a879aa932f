"""The EPLB follow-ups on vLLM's current line, as upstream can review them.

From FIRST_RELEASE on, upstream ships PR #36261's fused map+record kernel
and the per-token replica hash (#40810) under its own names, and from
0.25.0 padding masked per micro-batch (#38128). This line carries what it
still lacks, each patch written against upstream's code rather than by
swapping in the backport's; its first patch brings #38128's interface to
the releases before 0.25.0 (reported upstream from there), so the others
meet the same code everywhere. `series` lists the patches in order; new
code lives in `fragments/` as in the backport line; `sites` says where
each release keeps what the patches edit (checked on every pinned release
from FIRST_RELEASE on, requirements/base.toml).
"""

# The first release this line is for (the engine picks the line by base).
FIRST_RELEASE = "0.20.0"

# Its GPU run (eplb_fork/gpu_bundle.py, gpu-results/gpu-run.sh): the router
# at these patches' commits, between the release's ("base") and the tip
# ("head"); memcheck over every kernel test; the map+record benchmark
# against the release's own kernel ({repo}: this repository).
GPU_REVISIONS = {"relaxed": "eplb_relaxed_record", "shards": "eplb_sharded_load"}
GPU_BENCHMARKS = (("{repo}/gpu-results/current-2026-11-30/current_line.py",),)
