"""The backport line: PR #36261 as it lays itself out on vLLM 0.19 and the
releases before it, then our follow-ups on it.

`series` lists the patches in order; new code a patch puts into an
existing vLLM file lives in `fragments/` (this line's) or
`../shared/fragments/` (both lines'); `sites` says where the line's bases
keep what the patches edit. The line runs up to the first release that
ships part of it (requirements/base.toml; the engine reads the bound from
the patches' APPLIED_UPSTREAM).
"""

# Its GPU run (eplb_fork/gpu_bundle.py, gpu-results/gpu-run.sh): the router
# at these patches' commits, between the release's ("base") and the tip
# ("head"); memcheck over the tests of the address math and every masked
# path (invalid ids, empty and padded batches, row windows, direct
# launches, the per-id and histogram paths); the map+record benchmark per
# revision, then HEAD counting into the shards EplbState gives each layer,
# with the per-step fold. Benchmarks run from the bundle; {out} is the
# results folder, {repo} this repository.
GPU_REVISIONS = {
    "pr": "fused_map_record_kernel",
    "fixes": "eplb_skip_padded_tokens",
    "histogram": "eplb_block_histogram",
    "lean": "eplb_lean_launch",
    "dprows": "eplb_dp_own_rows",
    "shards": "eplb_sharded_load",
}
GPU_MEMCHECK = (
    *(
        f"tests/kernels/moe/test_eplb_{name}.py"
        for name in (
            "map_record",
            "record_paths",
            "padded_tokens",
            "lean_launch",
            "dp_rows",
            "sharded_load",
            "index_width",
        )
    ),
    "-k",
    "lean or graph or (dp_rows and cuda) or (sharded and cuda) or (index_width and cuda)"
    " or cuda and (corrupt or invalid or empty or non_contiguous or random or 4600"
    " or padded or beyond)",
)
GPU_BENCHMARKS = (
    (
        "benchmarks/kernels/benchmark_eplb_map_record.py",
        *(
            f"--revision={n}=revisions/{n}.py"
            for n in ("base", "pr", "lean", "dprows", "shards", "head")
        ),
        "--csv={out}/bench.csv",
        "--plot={out}/bench.png",
    ),
    ("{repo}/gpu-results/narrow-2026-11-30/head_shards.py",),
)
