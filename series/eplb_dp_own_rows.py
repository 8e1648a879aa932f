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
    add_call_keyword,
    add_members,
    add_parameter,
    bring_file,
    defines,
    if_block,
    import_names,
    insert_after,
    insert_before,
    python_file,
    replace_decorator,
    replace_statement,
    statement,
    with_block,
)

SUBJECT = "[EPLB] Count only each rank's real tokens under DP and micro-batching"
ORIGIN = "vendor"
DATE = "2026-11-29T18:00:00+00:00"

EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"
BASE_ROUTER = "vllm/model_executor/layers/fused_moe/router/base_router.py"
MOE_RUNNER = "vllm/model_executor/layers/fused_moe/runner/default_moe_runner.py"
MODEL_RUNNER = "vllm/v1/worker/gpu_model_runner.py"
KERNEL = "_eplb_map_and_record_kernel"
LAUNCHER = "eplb_map_and_record_triton"
PASS_THROUGH = "eplb_map_to_physical_and_record"
WINDOW = ("count_first", "count_end", "count_shift")
# Any window reuses one compiled kernel.
UNSPECIALIZED = 'triton.jit(do_not_specialize=["count_first", "count_end", "count_shift"])'

COUNT_REAL = "counted = counted & (token < tl.load(real_tokens_ptr))"
COUNT_OWN_REAL = """
# Only this rank's rows [count_first, count_end); row_in_batch is the
# row's place in this rank's padded batch.
row_in_batch = token - count_first + count_shift
own = (token >= count_first) & (token < count_end)
counted = counted & own & (row_in_batch < tl.load(real_tokens_ptr))
"""

LAUNCH_ARGS = """
args = (
    ids,
    out,
    logical_to_physical_map.contiguous(),
    logical_replica_count.contiguous(),
    expert_load_view,
    record_enabled,
    numel,
    *layer.shapes,
    top_k,
    real_token_count,
    real_token_count is not None,
    bins,
    block_size,
)
"""
# The window's ints go between top_k and the real-token count, as in the kernel.
LAUNCH_ARGS_WITH_WINDOW = (
    "\nwindow = (0, numel // top_k, 0) if counted_rows is None else counted_rows"
    + LAUNCH_ARGS.replace("    top_k,\n", "    top_k,\n    *window,\n")
)
DIRECT = """
direct = (
    layer.direct and (ids.data_ptr() | out.data_ptr()) % 16 == 0 and numel < 2**31
)
"""
DIRECT_WITH_WINDOW = """
# The window's ints are not specialized, but their width is.
direct = (
    layer.direct
    and (ids.data_ptr() | out.data_ptr()) % 16 == 0
    and numel < 2**31
    and min(window) >= -(2**31)
    and max(window) < 2**31
)
"""

# The docstring as it sits in the function (the anchor compares its text).
LAUNCHER_DOC = '''
"""Map logical expert ids to physical ones and, when `record_enabled`
    (a 0-dim bool device tensor) is set, count each physical id's tokens into
    `expert_load_view` in place.

    Ids outside `[0, num_logical)` map to -1 and are not counted. The result
    has the shape of `topk_ids` and the dtype `out_dtype` (default: that of
    `topk_ids`).
    """
'''
LAUNCHER_DOC_WITH_WINDOW = '''
"""Map logical expert ids to physical ones and, when `record_enabled`
(a 0-dim bool device tensor) is set, count each physical id's tokens into
`expert_load_view` in place.

Ids outside `[0, num_logical)` map to -1 and are not counted. With
`real_token_count`, only rows that are real tokens of this rank's batch are
counted: `counted_rows` is `(first, end, shift)`, this rank's rows
`[first, end)`, row r being row `r - first + shift` of its batch (default:
every row, in place). The result has the shape of `topk_ids` and the dtype
`out_dtype` (default: that of `topk_ids`).
"""
'''

ROUTER_ATTRIBUTE = '''
self.eplb_counted_rows: tuple[int, int, int] | None = None
"""Set by the MoE runner before routing: which of the router's rows are this
rank's and where they sit in its batch (see eplb_map_and_record_triton)."""
'''

COUNTED_ROWS = '''


def eplb_counted_rows(
    router_rows: int,
    batch_offset: int,
    gathered_sizes: list[int] | None = None,
    block: int = 0,
) -> tuple[int, int, int]:
    """The router's rows this rank records EPLB load for, as the map+record
    kernel takes them: `(first, end, shift)`, rows `[first, end)` being row
    `r - first + shift` of this rank's padded batch.

    Without a gather the router sees `router_rows` rows of this rank's batch
    from `batch_offset` on (a sequence-parallel slice, a DP chunk). A
    gather concatenates each rank's block (`gathered_sizes`, in group order)
    and every rank routes all of them: this rank counts only its own,
    `block`, so the load summed over ranks counts each token once.
    """
    if gathered_sizes is None:
        return 0, router_rows, batch_offset
    first = sum(gathered_sizes[:block])
    return first, first + gathered_sizes[block], batch_offset
'''

LAYER_FIELD = '''
ubatch_token_starts: list[int] | None = None
"""Shared by all layers: where each micro-batch starts in the batch."""
'''

STATE_ATTRIBUTE = '''
self.ubatch_token_starts: list[int] = []
"""
Where each micro-batch of the coming forward starts in the batch (empty
without micro-batching): host ints, one list shared with every layer and
updated in place, so the MoE runner places a micro-batch's rows.
"""
'''

SET_REAL_TOKEN_COUNT = '''
def set_real_token_count(
    self, num_tokens: int | None, ubatch_starts: Sequence[int] = ()
) -> None:
    """Rows of the coming forward that are real tokens (None: all rows), and
    where its micro-batches start (none: not micro-batched)."""
    if self.real_token_count is not None:
        self.real_token_count.fill_(
            ALL_ROWS_ARE_REAL if num_tokens is None else num_tokens
        )
    self.ubatch_token_starts[:] = ubatch_starts
'''

SET_COUNTED_ROWS = '''
def _set_eplb_counted_rows(
    self, batch_rows: int, chunk_start: int = 0, gathered: bool = False
) -> None:
    """Tell the router which rows it records EPLB load for (see
    eplb_counted_rows): `batch_rows` rows of this rank's batch reached the
    layer; a DP chunk starts at `chunk_start` of them; `gathered`: naive
    dispatch gathers every rank's rows before routing."""
    if not self.moe_config.moe_parallel_config.enable_eplb:
        return
    if self.moe_config.pcp_size > 1:
        # Prefill context parallelism gathers again after dispatch: the model
        # runner counts every row there, and so does the router.
        self.router.eplb_counted_rows = None
        return
    offset = chunk_start
    if self.moe_config.is_sequence_parallel:
        # sequence_parallel_chunk gave this rank its TP rank's equal slice.
        offset += get_tensor_model_parallel_rank() * batch_rows
    ubatch_starts = self.router.eplb_state.ubatch_token_starts
    if self.enable_dbo and ubatch_starts:
        # A micro-batch's rows start where the model runner split the batch.
        offset += ubatch_starts[dbo_current_ubatch_id()]
    rows = batch_rows - chunk_start
    if not gathered:
        self.router.eplb_counted_rows = eplb_counted_rows(rows, offset)
        return
    # The sizes and group dispatch_router_logits gathers with.
    sizes = get_forward_context().dp_metadata.get_chunk_sizes_across_dp_rank()
    sequence_parallel = self.moe_config.is_sequence_parallel
    group = get_ep_group() if sequence_parallel else get_dp_group()
    self.router.eplb_counted_rows = eplb_counted_rows(
        rows, offset, sizes, group.rank_in_group
    )
'''

SET_IN_FORWARD = """
# Before any gather: the rows that reached the layer are this rank's.
self._set_eplb_counted_rows(
    hidden_states.size(0), gathered=self.do_naive_dispatch_combine
)
"""
# v0.18: the gather is inline in forward_impl, its condition a local.
SET_IN_FORWARD_V018 = """
# Before any gather: the rows that reached the layer are this rank's.
self._set_eplb_counted_rows(
    hidden_states.size(0), gathered=do_naive_dispatch_combine
)
"""
DISPATCH = (
    "hidden_states, router_logits = self._maybe_dispatch(layer, hidden_states, router_logits)"
)
SET_IN_CHUNK = """
# Unclamped: a chunk past this rank's rows counts none of them.
self._set_eplb_counted_rows(num_tokens, chunk_start_)
"""

PUBLISH_TAIL = """
tail_is_padding = (
    self.parallel_config.data_parallel_size == 1 and ubatch_slices is None
)
"""
PUBLISH_REAL = """
# The MoE runner tells the router where each row sits in this rank's
# batch; prefill context parallelism gathers it in a way it does not, so
# there every row counts.
rows_are_placed = self.parallel_config.prefill_context_parallel_size == 1
"""
PUBLISH_CALL = """
self.eplb_state.set_real_token_count(
    num_tokens_unpadded if tail_is_padding else None
)
"""
PUBLISH_CALL_PLACED = """
self.eplb_state.set_real_token_count(
    num_tokens_unpadded if rows_are_placed else None,
    [ubatch.token_slice.start for ubatch in ubatch_slices_padded or ()],
)
"""

NO_REAL_TOKENS = """
if self.eplb_state is not None:
    # A dummy batch (capture, warm-up, an idle data-parallel rank) has no
    # real tokens; a captured graph keeps its micro-batch placement.
    starts = [
        ubatch.token_slice.start for ubatch in ubatch_slices_padded or ()
    ]
    self.eplb_state.set_real_token_count(0, starts)
"""
RESET_AFTER_DUMMY = """
if self.eplb_state is not None:
    self.eplb_state.set_real_token_count(None)
"""


def apply(tree):
    with python_file(tree, EPLB_STATE) as src:
        add_members(src, "EplbLayerState", LAYER_FIELD, after="real_token_count")
        insert_before(
            src, "EplbState.__init__", if_block('self.device.type == "cuda"'), STATE_ATTRIBUTE
        )
        insert_after(
            src, "EplbState._init_should_record_tensor",
            statement("layer_state.real_token_count = self.real_token_count"),
            "layer_state.ubatch_token_starts = self.ubatch_token_starts",
        )  # fmt: skip
        replace_statement(
            src, "EplbState", defines("set_real_token_count"), SET_REAL_TOKEN_COUNT,
            done=statement(SET_REAL_TOKEN_COUNT),
        )  # fmt: skip

    with python_file(tree, BASE_ROUTER) as src:
        for name in WINDOW:
            add_parameter(src, KERNEL, name, before="real_tokens_ptr")
        replace_decorator(src, KERNEL, "triton.jit", UNSPECIALIZED)
        replace_statement(
            src, KERNEL, statement(COUNT_REAL), COUNT_OWN_REAL,
            done=statement("own = (token >= count_first) & (token < count_end)"),
        )  # fmt: skip
        for function in (LAUNCHER, PASS_THROUGH):
            add_parameter(src, function, "counted_rows", before="out_dtype",
                          annotation="tuple[int, int, int] | None", default="None")  # fmt: skip
        replace_statement(
            src, LAUNCHER, statement(LAUNCHER_DOC), LAUNCHER_DOC_WITH_WINDOW,
            done=statement(LAUNCHER_DOC_WITH_WINDOW),
        )  # fmt: skip
        replace_statement(
            src, LAUNCHER, statement(LAUNCH_ARGS), LAUNCH_ARGS_WITH_WINDOW,
            done=statement(LAUNCH_ARGS_WITH_WINDOW.split("\n", 2)[1]),
        )  # fmt: skip
        replace_statement(
            src, LAUNCHER, statement(DIRECT), DIRECT_WITH_WINDOW,
            done=statement(DIRECT_WITH_WINDOW),
        )  # fmt: skip
        insert_after(
            src,
            "BaseRouter.__init__",
            statement("self.capture_fn: Callable[[torch.Tensor], None] | None = None"),
            ROUTER_ATTRIBUTE,
        )
        add_call_keyword(
            src, "BaseRouter._apply_eplb_mapping", PASS_THROUGH,
            "counted_rows", "self.eplb_counted_rows",
        )  # fmt: skip

    with python_file(tree, MOE_RUNNER) as src:
        import_names(src, "vllm.distributed", "get_dp_group", "get_tensor_model_parallel_rank")
        insert_before(src, "", defines("DefaultMoERunner"), COUNTED_ROWS)
        add_members(src, "DefaultMoERunner", SET_COUNTED_ROWS, after="forward")
        if src.has_statement("DefaultMoERunner.forward_impl", statement(DISPATCH)):
            insert_before(src, "DefaultMoERunner.forward_impl", statement(DISPATCH), SET_IN_FORWARD)
        else:
            insert_before(
                src, "DefaultMoERunner.forward_impl",
                if_block("do_naive_dispatch_combine"), SET_IN_FORWARD_V018,
            )  # fmt: skip
        insert_before(
            src, "DefaultMoERunner.forward_impl_chunked",
            statement("chunk_start = min(chunk_start, num_tokens - 1)"),
            SET_IN_CHUNK,
        )  # fmt: skip

    with python_file(tree, MODEL_RUNNER) as src:
        replace_statement(
            src, "GPUModelRunner.execute_model", statement(PUBLISH_TAIL), PUBLISH_REAL,
            done=statement(PUBLISH_REAL), keep_comments=False,
        )  # fmt: skip
        replace_statement(
            src, "GPUModelRunner.execute_model", statement(PUBLISH_CALL), PUBLISH_CALL_PLACED,
            done=statement(PUBLISH_CALL_PLACED),
        )  # fmt: skip
        forward = with_block("self.maybe_randomize_inputs")
        insert_before(src, "GPUModelRunner._dummy_run", forward, NO_REAL_TOKENS)
        insert_after(src, "GPUModelRunner._dummy_run", forward, RESET_AFTER_DUMMY)

    bring_file(tree, "tests/kernels/moe/test_eplb_dp_rows.py")
