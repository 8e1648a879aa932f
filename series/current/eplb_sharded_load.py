"""While EPLB records, every MoE layer of every forward counts its expert
load with one atomic per (token, slot) onto one row of int32 counters (288
of them are 9 cache lines of 128 bytes), and the atomics queue in the L2:
on an H200 recording cost 2.5x what skipping does at 2048-8192 tokens.

Each layer now counts into K copies of its row (a [K, num_physical] view of
per-model [num_moe_layers, K, num_physical] shards that EplbState
allocates), program p into copy p % K, with the relaxed atomics of the
commit before. K is 64, halved until a model's shards fit in 8 MiB (64 at
61 layers x 288 experts, 4 at 61 x 4600). EplbState.step folds the shards
into expert_load_pass first thing (pass += shards.sum(1); shards.zero_()),
on the steps whose forwards recorded (the flag they read is the rule's
value for this step), so every reader of the pass (the dummy and profile
drops, the balancedness log and its all-reduce, the window) sees the
counts as before. update_mapping drops the shards with the pass (0.30 on;
0.29's keeps the pass, and the shards with it); elastic EP folds before it
resizes the pass and re-shards after (in reconfigure_physical_expert_slots
from 0.30, in the scaling executor's switch_and_prepare before). From 0.34
the kernel hands upstream's shared eplb_map_and_record its program's shard
to count into. A layer finds its row of the shards by where its
load view lies in the pass; one that is not found (elastic EP's wider
capacity views), and every caller passing a 1-D load (the MegaMoE path),
counts into the row as before.

Measured on an H200 against the commit before, in one process under
Triton 3.8 (CUDA-graph replay, median of 3 rounds, the 64 shards a layer
gets at 61 layers), 256 -> 288 experts, uniform routing, us per call:

  tokens   recording, before -> shards   skipping, before -> shards
  512      2.26 -> 2.07                  1.92 -> 1.95
  2048     4.24 -> 2.29                  2.03 -> 2.06
  8192     12.48 -> 3.08                 2.44 -> 2.49
  32768    45.24 -> 7.00                 3.45 -> 3.53

Over both shapes and routings recording now costs 0.89-1.01x upstream's
kernel's skipping up to 2048 tokens, 1.10-1.22x at 8192, 1.49-1.86x at
32768 (one atomic per id bounds it there), against 1.2-18.8x for
upstream's own recording; skipping costs 1.00-1.04x the commit before.
Against 0.34.0's kernel under Triton 3.6 (gpu-results/current-2026-12-03/):
recording 0.96-1.04x upstream's skipping up to 2048 tokens, 1.12-1.26x at
8192, 1.63-2.07x at 32768, 0.10-0.24x the commit before at 8192 and more;
skipping 0.99-1.02x the commit before. The fold costs 7.3 us per
recorded step captured at 61 layers x 288 x 64 (7.2 us at 61 x 4600 x
4). Folding in the kernel instead (its last program sums the shards,
keeping upstream's shapes) measured 2-6x slower in a probe on the
backport.
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    add_definitions,
    add_members,
    add_parameter,
    assigns,
    assigns_item,
    bring_file,
    call_statement,
    defines,
    insert_after,
    insert_before,
    python_file,
    replace_argument,
    replace_statement,
    set_call_keyword,
)
from series.current.sites import (
    BASE_ROUTER,
    ENTRY,
    EPLB_STATE,
    KERNEL,
    LAUNCHER,
    SHARED_MAP,
    pass_resize,
    router_layer_state,
    shared_map,
)

SUBJECT = "[EPLB] Count expert load into per-program shards, folded once per step"
ORIGIN = "vendor"
DATE = "2026-11-30T07:40:00+00:00"


def apply(tree):
    shared = Fragments("series/shared/fragments/eplb_sharded_load.py")
    kernel = Fragments("series/current/fragments/eplb_sharded_load.py")
    with python_file(tree, EPLB_STATE) as src:
        add_definitions(
            src, code=shared.definition("expert_load_shard_count"), before=defines("EplbState")
        )
        for owner in ("EplbModelState", "EplbLayerState"):
            add_members(src, owner, code=shared.members(owner), after="num_unpadded_tokens_tensors")
        add_members(
            src, "EplbState", code=shared.members("EplbState"), after="_propagate_shared_tensors"
        )
        registered = assigns_item("self.model_states")
        insert_after(
            src,
            "EplbState.add_model",
            anchor=registered,
            code="self._shard_expert_load(model_state)",
        )
        insert_after(
            src, "EplbState.step", anchor=assigns("ep_group"), code=shared.body("fold_shards_first")
        )
        # From 0.30 a new mapping drops the pass: the shards' counts with it.
        dropped = call_statement("eplb_model_state.expert_load_pass.zero_")
        if src.has_statement("EplbState.update_mapping", dropped):
            insert_before(
                src,
                "EplbState.update_mapping",
                anchor=dropped,
                code="self._fold_expert_load(eplb_model_state)",
            )

    # Counts still in the shards belong to the old layout.
    resize = pass_resize(tree)
    state, model = resize.eplb_state, resize.model_state
    with python_file(tree, resize.path) as src:
        fold = f"{state}._fold_expert_load({model})"
        insert_before(src, resize.function, anchor=assigns("old_num_physical_experts"), code=fold)
        shard = f"{state}._shard_expert_load({model})"
        insert_after(src, resize.function, anchor=resize.resized, code=shard)

    with python_file(tree, BASE_ROUTER) as src:
        if shared_map(tree):
            # 0.34 on: the kernel hands eplb_map_and_record its program's shard.
            add_parameter(src, KERNEL, name="num_shards", before="BLOCK_SIZE")
            insert_before(
                src,
                KERNEL,
                anchor=assigns("physical_id"),
                code=kernel.body("program_shard_of_the_row"),
            )
            replace_argument(src, KERNEL, callee=SHARED_MAP, old="out_ptr", new="shard_ptr")
        else:
            add_parameter(src, KERNEL, name="num_shards", before="HAS_NUM_UNPADDED")
            count = kernel.body("count_into_program_shard")
            replace_statement(
                src,
                KERNEL,
                anchor=call_statement("tl.atomic_add"),
                code=count,
                done=assigns("shard_ptr"),
            )
        launch = f"{KERNEL}[...]"
        replace_argument(
            src,
            LAUNCHER,
            callee=launch,
            old="expert_load_view.shape[0]",
            new="expert_load_view.shape[-1]",
        )
        shards = "1 if expert_load_view.dim() == 1 else expert_load_view.shape[0]"
        add_call_keyword(src, LAUNCHER, callee=launch, keyword="num_shards", value=shards)
        set_call_keyword(
            src,
            "BaseRouter._apply_eplb_mapping",
            callee=ENTRY,
            keyword="expert_load_view",
            value=f"{router_layer_state(tree)}.expert_load_counter",
        )
    bring_file(tree, "tests/kernels/moe/test_eplb_load_shards.py")
    bring_file(tree, "tests/distributed/eplb/test_eplb_load_shard_fold.py")
