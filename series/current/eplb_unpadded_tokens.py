"""Batches run padded (to a CUDA-graph size, and under DP to the largest
rank's count), and the padded rows go through the router like real
tokens: the map+record kernel counts them as expert load, so the
rearrangements balance for padding. Upstream stops that in 0.25.0
(#38128); this brings its interface to the releases before, in our own
code:

EplbState.add_model gives each model one 0-dim int32 count per micro-batch,
handed to every layer with the record flag (`_propagate_shared_tensors`,
which takes over from `_init_should_record_tensor`, elastic EP's call
included). `EplbState.prepare_forward(model_config, num_unpadded_tokens,
ubatch_slices)` fills them before a forward, each micro-batch with its
share; both GPU model runners call it before the forward. It finds a
model's counts by its config object, so a step does not hash the config
(ModelConfig.compute_hash() serializes and hashes it). The router
passes its micro-batch's count to the kernel, which maps every row and
counts only rows below it. The counts are read on the device, so one
captured graph records each replay's own batch.

Unlike upstream the counts start at "every row", not 0: a model whose
runner publishes nothing (a drafter, whose proposers these releases do not
touch) keeps counting every row, as before, rather than nothing. A dummy
batch publishes 0 real tokens: start-up's captures and warm-ups skip
EplbState.step, which drops a dummy batch's load, so in vLLM 0.24.0's
engine (an H100) their ~510 tokens per layer landed in the first window
slot.
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    add_definitions,
    add_members,
    add_parameter,
    after_blank_line,
    assigns,
    bring_file,
    call_statement,
    defines,
    ensure_import,
    if_block,
    insert_after,
    insert_before,
    python_file,
    remove_statement,
    replace_definition,
    replace_statement,
    with_block,
)
from series.current.sites import (
    BASE_ROUTER,
    ELASTIC_EXECUTE,
    ELASTIC_SWITCH,
    ENTRY,
    EPLB_CONTROLLER,
    EPLB_STATE,
    KERNEL,
    LAUNCHER,
    MODEL_RUNNER,
    MODEL_RUNNER_V2,
    router_layer_state,
)

SUBJECT = "[EPLB] Do not record padded tokens as expert load"
ORIGIN = "backport, https://github.com/vllm-project/vllm/pull/38128"
APPLIED_UPSTREAM = "v0.25.0, https://github.com/vllm-project/vllm/pull/38128"
DATE = "2026-12-06T09:00:00+00:00"

OLD_HANDOUT = "_init_should_record_tensor"
HANDOUT = "_propagate_shared_tensors"
COUNTS = "num_unpadded_tokens_tensors"
PICK_COUNT = "_unpadded_tokens_of"
EPLB_STATE_MODULE = "vllm.distributed.eplb.eplb_state"


def apply(tree):
    code = Fragments("series/current/fragments/eplb_unpadded_tokens.py")
    with python_file(tree, EPLB_STATE) as src:
        constant = after_blank_line(code.definition("ALL_ROWS_ARE_REAL"))
        insert_after(src, "", anchor=assigns("logger"), code=constant)
        add_members(
            src, "EplbLayerState", code=code.members("EplbLayerState"), after="should_record_tensor"
        )
        add_members(
            src, "EplbModelState", code=code.members("EplbModelState"), after="pending_result"
        )
        by_config = code.body("declare_counts_by_config")
        insert_after(src, "EplbState.__init__", anchor=assigns("self.model_states"), code=by_config)
        add_model = "EplbState.add_model"
        counts = code.body("allocate_unpadded_counts")
        insert_before(src, add_model, anchor=call_statement("model.set_eplb_state"), code=counts)
        replace_statement(
            src,
            add_model,
            anchor=call_statement(f"self.{OLD_HANDOUT}"),
            code=f"self.{HANDOUT}(model, {COUNTS})",
        )
        add_call_keyword(src, add_model, callee="EplbModelState", keyword=COUNTS, value=COUNTS)
        add_members(src, "EplbState", code=code.members("EplbState"), after=OLD_HANDOUT)
        remove_statement(src, "EplbState", anchor=defines(OLD_HANDOUT))
    with python_file(tree, ELASTIC_EXECUTE) as src:
        handout = code.body("hand_out_after_resize")
        old = call_statement(f"eplb_state.{OLD_HANDOUT}")
        replace_statement(src, ELASTIC_SWITCH, anchor=old, code=handout)

    layer_state = router_layer_state(tree)
    with python_file(tree, BASE_ROUTER) as src:
        ensure_import(src, "from vllm.v1.worker.ubatching import dbo_current_ubatch_id")
        add_parameter(src, KERNEL, name="num_unpadded_tokens_ptr", before="num_logical_experts")
        add_parameter(
            src, KERNEL, name="HAS_NUM_UNPADDED", before="BLOCK_SIZE", annotation="tl.constexpr"
        )
        insert_before(src, KERNEL, anchor=assigns("valid"), code=code.body("skip_padded_rows"))
        replace_statement(
            src, KERNEL, anchor=assigns("valid"), code=code.body("record_unpadded_only")
        )
        replace_definition(src, "", code=code.definition(LAUNCHER))
        add_definitions(src, code=code.definition(PICK_COUNT), before=defines("BaseRouter"))
        add_parameter(
            src, ENTRY, name="num_unpadded_tokens", annotation="torch.Tensor | None", default="None"
        )
        add_call_keyword(
            src, ENTRY, callee=LAUNCHER, keyword="num_unpadded_tokens", value="num_unpadded_tokens"
        )
        insert_after(
            src,
            "BaseRouter._validate_eplb_state",
            anchor=if_block(f"{layer_state}.should_record_tensor is None"),
            code=code.body("require_unpadded_counts"),
        )
        add_call_keyword(
            src,
            "BaseRouter._apply_eplb_mapping",
            callee=ENTRY,
            keyword="num_unpadded_tokens",
            value=f"{PICK_COUNT}({layer_state})",
        )

    with python_file(tree, MODEL_RUNNER) as src:
        forward = with_block("set_forward_context")
        for function, publish in (
            ("execute_model", "publish_real_tokens"),
            ("_dummy_run", "no_real_tokens_in_dummy_batch"),
        ):
            insert_before(
                src, f"GPUModelRunner.{function}", anchor=forward, code=code.body(publish)
            )
    with python_file(tree, EPLB_CONTROLLER) as src:
        ensure_import(src, "from vllm.config import ModelConfig", before=EPLB_STATE_MODULE)
        add_members(src, "EPLBController", code=code.members("EPLBController"), after="step")
    with python_file(tree, MODEL_RUNNER_V2) as src:
        insert_before(
            src,
            "GPUModelRunner.execute_model",
            anchor=if_block("batch_desc.cg_mode == CUDAGraphMode.FULL"),
            code=code.body("publish_real_tokens_of_the_batch"),
        )
    bring_file(tree, "tests/kernels/moe/eplb_router_entry.py")
    bring_file(tree, "tests/kernels/moe/test_eplb_unpadded_tokens.py")
    bring_file(tree, "tests/distributed/eplb/eplb_single_rank.py")
    bring_file(tree, "tests/distributed/eplb/test_eplb_unpadded_counts.py")
