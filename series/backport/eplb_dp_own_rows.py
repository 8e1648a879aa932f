"""With data parallelism the model runner left the real-token count at "all
rows", so padding was recorded as expert load, and more than once. Take
four DP ranks with 3, 0, 5 and 1 scheduled tokens in a CUDA-graph step of
8 rows each: naive dispatch (allgather_reducescatter with a method that has
no modular kernel, e.g. unquantized) gathers 32 rows and every one of the
4 EP ranks routes and records all 32, so the window's all-reduced load
holds 128 token counts per top-k slot of which 9 come from real tokens,
each counted 4 times; 23 of the 32 rows are padding. An idle rank's dummy
batch was recorded too.

The kernel now counts a row only inside a window the caller passes as host
ints, (first, end, shift): rows [first, end) are this rank's, and row r
sits at r - first + shift in this rank's padded batch, so it is real if
that is below the real count (still read on the device). DefaultMoERunner
sets the window on its router before routing:

  - local rows (modular kernels: DeepEP, mori, NIXL, FlashInfer): (0, rows,
    offset), where offset is this rank's sequence-parallel slice start
    (tp_rank * slice rows) plus, under DP chunking, the chunk's start. A
    rank that ran out of tokens re-routes its last row in lockstep; its
    chunk start is past its batch, so nothing is counted twice.
  - gathered rows (naive dispatch): this rank's block of the gather, from
    the sizes the gather itself used (DPMetadata's local sizes) and this
    rank's index in the gathering group (DP, or EP when sequence parallel).
    Each rank counts only its own block, so the all-reduced load counts
    every real token once per tensor-parallel rank of its DP rank (once
    with sequence parallelism) instead of once per EP rank.
  - micro-batches (DBO): each starts where the model runner split the
    batch; EplbState keeps the starts as host ints in one list shared with
    every layer, and the runner adds its micro-batch's start to the offset.

The window is fixed by the padded sizes, which every rank agrees on and a
CUDA graph is captured for, so a replay keeps it; the real count changes
per step on the device as before. The model runner now publishes the real
count with DP and micro-batching too, and 0 for dummy batches (capture,
warm-up, an idle DP rank). Prefill context parallelism (which gathers
again after dispatch) still counts every row.

The window's ints are not specialized by Triton (do_not_specialize), so
the lean launch's variants are unchanged.
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    add_definitions,
    add_members,
    add_parameter,
    assigns,
    bring_file,
    call_statement,
    defines,
    if_block,
    import_names,
    insert_after,
    insert_before,
    insert_below_comments,
    insert_element,
    python_file,
    replace_decorator,
    replace_definition,
    replace_docstring,
    replace_statement,
    uses,
    with_block,
)
from series.backport.sites import (
    BASE_ROUTER,
    DEFAULT_MOE_RUNNER,
    EPLB_STATE,
    KERNEL,
    LAUNCHER,
    MODEL_RUNNER,
    PASS_THROUGH,
)

SUBJECT = "[EPLB] Count only each rank's real tokens under DP and micro-batching"
ORIGIN = "vendor"
DATE = "2026-11-29T18:00:00+00:00"

WINDOW = ("count_first", "count_end", "count_shift")
# Any window reuses one compiled kernel.
UNSPECIALIZED = 'triton.jit(do_not_specialize=["count_first", "count_end", "count_shift"])'


def apply(tree):
    code = Fragments("series/backport/fragments/eplb_dp_own_rows.py")
    with python_file(tree, EPLB_STATE) as src:
        add_members(
            src, "EplbLayerState", code=code.members("EplbLayerState"), after="real_token_count"
        )
        declare = code.body("declare_ubatch_token_starts")
        insert_before(
            src, "EplbState.__init__", anchor=if_block('self.device.type == "cuda"'), code=declare
        )
        insert_after(
            src,
            "EplbState._init_should_record_tensor",
            anchor=assigns("layer_state.real_token_count"),
            code="layer_state.ubatch_token_starts = self.ubatch_token_starts",
        )
        replace_definition(src, "EplbState", code=code.members("EplbState"))

    with python_file(tree, BASE_ROUTER) as src:
        for name in WINDOW:
            add_parameter(src, KERNEL, name=name, before="real_tokens_ptr")
        replace_decorator(src, KERNEL, old="triton.jit", new=UNSPECIALIZED)
        own_rows = code.body("count_own_real_rows")
        replace_statement(
            src, KERNEL, anchor=uses("real_tokens_ptr"), code=own_rows, done=assigns("own")
        )
        for function in (LAUNCHER, PASS_THROUGH):
            add_parameter(
                src,
                function,
                name="counted_rows",
                before="out_dtype",
                annotation="tuple[int, int, int] | None",
                default="None",
            )
        replace_docstring(src, LAUNCHER, code=code.body("launcher_docstring"))
        # The window's ints follow top_k, as in the kernel's parameters.
        args = assigns("args")
        insert_below_comments(src, LAUNCHER, anchor=args, code=code.body("default_row_window"))
        insert_element(src, LAUNCHER, anchor=args, element="*window", after="top_k")
        direct = code.body("direct_launch_fits_window")
        replace_statement(src, LAUNCHER, anchor=assigns("direct"), code=direct)
        declare = code.body("declare_counted_rows")
        insert_after(src, "BaseRouter.__init__", anchor=assigns("self.capture_fn"), code=declare)
        add_call_keyword(
            src,
            "BaseRouter._apply_eplb_mapping",
            callee=PASS_THROUGH,
            keyword="counted_rows",
            value="self.eplb_counted_rows",
        )

    with python_file(tree, DEFAULT_MOE_RUNNER) as src:
        import_names(src, "vllm.distributed", "get_dp_group", "get_tensor_model_parallel_rank")
        counted_rows = code.definition("eplb_counted_rows")
        add_definitions(src, code=counted_rows, before=defines("DefaultMoERunner"))
        add_members(src, "DefaultMoERunner", code=code.members("DefaultMoERunner"), after="forward")
        forward_impl = "DefaultMoERunner.forward_impl"
        dispatch = uses("self._maybe_dispatch")
        if src.has_statement(forward_impl, dispatch):
            set_rows = code.body("set_counted_rows_before_dispatch")
        else:  # v0.18: the gather is inline in forward_impl.
            dispatch = if_block("do_naive_dispatch_combine")
            set_rows = code.body("set_counted_rows_before_inline_gather")
        insert_before(src, forward_impl, anchor=dispatch, code=set_rows)
        per_chunk = code.body("set_counted_rows_per_chunk")
        insert_after(
            src,
            "DefaultMoERunner.forward_impl_chunked",
            anchor=assigns("chunk_end"),
            code=per_chunk,
        )

    with python_file(tree, MODEL_RUNNER) as src:
        execute_model, dummy_run = "GPUModelRunner.execute_model", "GPUModelRunner._dummy_run"
        replace_statement(
            src,
            execute_model,
            anchor=assigns("tail_is_padding"),
            code=code.body("decide_rows_are_placed"),
            done=assigns("rows_are_placed"),
            keep_comments=False,
        )
        publish = code.body("publish_real_rows")
        publish_count = call_statement("self.eplb_state.set_real_token_count")
        replace_statement(src, execute_model, anchor=publish_count, code=publish)
        forward = with_block("self.maybe_randomize_inputs")
        insert_before(
            src, dummy_run, anchor=forward, code=code.body("no_real_tokens_in_dummy_batch")
        )
        insert_after(
            src, dummy_run, anchor=forward, code=code.body("count_all_rows_after_dummy_batch")
        )

    bring_file(tree, "tests/kernels/moe/test_eplb_dp_rows.py")
