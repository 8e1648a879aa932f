"""While EPLB records, every MoE layer of every forward counts its expert
load with atomics onto one row of 288 int32 counters (9 cache lines of 128
bytes), and they queue in the L2: at 2048 tokens and more, recording cost
2.4-3x what skipping does even with the per-tile histogram.

Each layer now counts into K copies of its row (a [K, num_physical] view of
per-model [num_moe_layers, K, num_physical] shards that EplbState allocates),
program p into copy p % K, one relaxed atomic per id, in 256-id tiles of 4
warps. Relaxed is enough: the counts are read only by the fold, a later
kernel in stream order, after the map+record kernel has ended; no atomic has
to order other memory accesses (the default acq_rel fences each one).
EplbState.step folds the shards into expert_load_pass first thing
(pass += shards.sum(1); shards.zero_()), on the steps whose forwards
recorded (the flag they read is the rule's value for this step, so the
other steps skip the fold), and every reader of the pass (the
profile and dummy drops, the balancedness log and its all-reduce, the window
update, elastic EP's resize, which folds before it pads or slices) sees the
counts as before. Forwards without a step in between (warm-up, capture,
pipeline ranks that do not step) leave their counts in the shards until the
next fold, as they waited in the pass before.

K is 64, halved until a model's shards fit in 8 MiB: 64 at 61 layers x 288
experts, 4 at 61 x 4600. A layer finds its row of the shards by where its
load view lies in the pass (models map layers to rows themselves); one that
is not found, and every caller passing a 1-D load, counts into the row as
before. The per-tile histogram no longer earns its place (64 shards, one atomic
per id, beat it up to 8192 tokens and stay within 0.8 us of it at 32768)
and goes, with its tile sizing.

Measured on an H200, the commit before against this one with the 64
shards a layer gets (CUDA-graph replay, 256 -> 288 experts, uniform
routing, us per call; the PR kernel's skipping for scale):

  tokens   recording, before -> shards   skipping      PR skipping
  2048     6.72 -> 2.34                  2.22 -> 2.22  2.17
  8192     6.29 -> 3.20                  2.48 -> 2.58  2.51
  32768    7.94 -> 6.41                  3.72 -> 3.66  3.51

Recording now costs at most 1.28x the PR kernel's skipping up to 8192
tokens (both shapes, both routings), 1.92x at 32768. Eager host time per
call: 1.20x an empty Triton launch (1.36x before). The fold costs 7.3 us
per recorded step captured at 61 layers x 288 x 64 (7.2 us at 61 x 4600 x
4), against ~3 us saved per layer at 8192 tokens. Folding in the kernel
instead (its last program sums the shards, keeping upstream's shapes)
measured 2-6x slower in a probe: its serial tail costs more than the
contention it removes.
"""

from eplb_fork.codemod import (
    Fragments,
    add_definitions,
    add_members,
    add_parameter,
    assigns,
    bring_file,
    call_statement,
    defines,
    if_block,
    insert_after,
    insert_before,
    python_file,
    remove_element,
    remove_parameter,
    remove_statement,
    replace_decorator,
    replace_docstring,
    replace_statement,
    set_call_keyword,
)
from series.backport.sites import (
    BASE_ROUTER,
    ELASTIC_EXECUTE,
    ELASTIC_SWITCH,
    EPLB_STATE,
    KERNEL,
    LAUNCHER,
)

SUBJECT = "[EPLB] Count expert load into per-program shards, folded once per step"
ORIGIN = "vendor"
DATE = "2026-11-30T05:00:00+00:00"

LAYER_LAUNCH = "_LayerLaunch.__init__"
RECORD_PATHS = "tests/kernels/moe/test_eplb_record_paths.py"


def apply(tree):
    code = Fragments("series/shared/fragments/eplb_sharded_load.py")
    with python_file(tree, EPLB_STATE) as src:
        shard_count = code.definition("expert_load_shard_count")
        add_definitions(src, code=shard_count, before=defines("EplbState"))
        last_field = "new_physical_to_logical_map"
        add_members(src, "EplbModelState", code=code.members("EplbModelState"), after=last_field)
        add_members(
            src, "EplbLayerState", code=code.members("EplbLayerState"), after="ubatch_token_starts"
        )
        add_members(
            src, "EplbState", code=code.members("EplbState"), after="_init_should_record_tensor"
        )
        registered = assigns("self.model_states[model_config.compute_hash()]")
        insert_after(
            src,
            "EplbState.add_model",
            anchor=registered,
            code="self._shard_expert_load(model_state)",
        )
        insert_before(
            src,
            "EplbState.step",
            anchor=if_block("is_profile"),
            code=code.body("fold_shards_first"),
        )

    with python_file(tree, ELASTIC_EXECUTE) as src:
        # Counts still in the shards belong to the old layout.
        resize = assigns("old_num_physical_experts")
        insert_before(
            src,
            ELASTIC_SWITCH,
            anchor=resize,
            code="eplb_state._fold_expert_load(eplb_model_state)",
        )
        handed = call_statement("eplb_state._init_should_record_tensor")
        insert_after(
            src,
            ELASTIC_SWITCH,
            anchor=handed,
            code="eplb_state._shard_expert_load(eplb_model_state)",
        )

    with python_file(tree, BASE_ROUTER) as src:
        add_parameter(src, KERNEL, name="num_shards", before="top_k")
        remove_parameter(src, KERNEL, name="HISTOGRAM_BINS")
        count = code.body("count_into_program_shard")
        replace_statement(
            src,
            KERNEL,
            anchor=if_block("HISTOGRAM_BINS > 0"),
            code=count,
            done=assigns("shard"),
            keep_comments=False,
        )
        remove_statement(src, "", anchor=assigns("MAX_HISTOGRAM_BINS"))

        check = code.body("check_load_layout")
        replace_statement(
            src, LAYER_LAUNCH, anchor=if_block("not load.is_contiguous()"), code=check
        )
        shapes = code.body("shapes_with_shards")
        replace_statement(src, LAYER_LAUNCH, anchor=assigns("self.shapes"), code=shapes)
        for gone in ("bins", "self.histogram_bins"):
            remove_statement(src, LAYER_LAUNCH, anchor=assigns(gone))

        replace_docstring(src, LAUNCHER, code=code.body("launcher_docstring"))
        for gone in ("min_block", "per_program", "bins"):
            remove_statement(src, LAUNCHER, anchor=assigns(gone))
        tile = code.body("tile_of_256_ids")
        replace_statement(src, LAUNCHER, anchor=assigns("block_size"), code=tile)
        warps = code.body("four_warps")
        replace_statement(src, LAUNCHER, anchor=assigns("num_warps"), code=warps)
        remove_element(src, LAUNCHER, anchor=assigns("args"), element="bins")
        set_call_keyword(
            src,
            "BaseRouter._apply_eplb_mapping",
            callee="eplb_map_to_physical_and_record",
            keyword="expert_load_view",
            value="self.eplb_state.expert_load_counter",
        )

    # Its tests ran each recording path; one is left.
    with python_file(tree, RECORD_PATHS) as src:
        replace_docstring(src, "", code=code.body("record_paths_docstring"))
        replace_decorator(
            src,
            "record_path",
            old='pytest.fixture(params=["histogram", "per_id"])',
            new='pytest.fixture(params=["per_id"])',
        )
        remove_statement(src, "record_path", anchor=if_block('request.param == "per_id"'))

    bring_file(tree, "tests/kernels/moe/test_eplb_sharded_load.py")
    bring_file(tree, "tests/distributed/eplb/test_eplb_load_shard_fold.py")
