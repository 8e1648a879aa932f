"""Fragment: each rank counts only its own real rows, under DP and DBO.

The patch `eplb_dp_own_rows` puts this code into
vllm/distributed/eplb/eplb_state.py,
vllm/model_executor/layers/fused_moe/router/base_router.py,
vllm/model_executor/layers/fused_moe/runner/default_moe_runner.py and
vllm/v1/worker/gpu_model_runner.py, each piece where the patch says
(`eplb_counted_rows` lands as it is, before DefaultMoERunner). The imports
are those the files have (the patch adds two to the MoE runner's).
"""

from collections.abc import Sequence

from vllm.distributed import (
    get_dp_group,
    get_ep_group,
    get_tensor_model_parallel_rank,
)
from vllm.distributed.eplb.eplb_state import ALL_ROWS_ARE_REAL
from vllm.forward_context import get_forward_context
from vllm.triton_utils import tl
from vllm.v1.worker.ubatching import dbo_current_ubatch_id

# eplb_state.py: the micro-batch starts, shared with every layer.


class EplbLayerState:

    ubatch_token_starts: list[int] | None = None
    """Shared by all layers: where each micro-batch starts in the batch."""


def declare_ubatch_token_starts(self) -> None:
    self.ubatch_token_starts: list[int] = []
    """
    Where each micro-batch of the coming forward starts in the batch (empty
    without micro-batching): host ints, one list shared with every layer and
    updated in place, so the MoE runner places a micro-batch's rows.
    """


class EplbState:

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


# base_router.py: the kernel counts only a window of rows the caller passes.


def count_own_real_rows(
    counted, token, count_first, count_end, count_shift, real_tokens_ptr
):
    """In the kernel, in place of the mask of rows below the real count."""
    # Only this rank's rows [count_first, count_end); row_in_batch is the
    # row's place in this rank's padded batch.
    row_in_batch = token - count_first + count_shift
    own = (token >= count_first) & (token < count_end)
    counted = counted & own & (row_in_batch < tl.load(real_tokens_ptr))
    return counted


def launcher_docstring() -> None:
    """The launcher's docstring (below), now with the row window."""
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


def default_row_window(numel, top_k, counted_rows):
    """In the launcher, before the kernel's arguments (which gain it)."""
    window = (0, numel // top_k, 0) if counted_rows is None else counted_rows
    return window


def direct_launch_fits_window(layer, ids, out, numel, window):
    """In the launcher, in place of the direct-launch condition."""
    # The window's ints are not specialized, but their width is.
    direct = (
        layer.direct
        and (ids.data_ptr() | out.data_ptr()) % 16 == 0
        and numel < 2**31
        and min(window) >= -(2**31)
        and max(window) < 2**31
    )
    return direct


def declare_counted_rows(self) -> None:
    self.eplb_counted_rows: tuple[int, int, int] | None = None
    """Set by the MoE runner before routing: which of the router's rows are this
    rank's and where they sit in its batch (see eplb_map_and_record_triton)."""


# default_moe_runner.py: the MoE runner tells its router the window.


class DefaultMoERunner:

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


def set_counted_rows_before_dispatch(self, hidden_states) -> None:
    # Before any gather: the rows that reached the layer are this rank's.
    self._set_eplb_counted_rows(
        hidden_states.size(0), gathered=self.do_naive_dispatch_combine
    )


def set_counted_rows_before_inline_gather(
    self, hidden_states, do_naive_dispatch_combine
) -> None:
    """v0.18 gathers inline in `forward_impl`: before its
    `if do_naive_dispatch_combine:`, its condition a local."""
    # Before any gather: the rows that reached the layer are this rank's.
    self._set_eplb_counted_rows(
        hidden_states.size(0), gathered=do_naive_dispatch_combine
    )


def set_counted_rows_per_chunk(self, num_tokens, chunk_start_) -> None:
    # Unclamped: a chunk past this rank's rows counts none of them.
    self._set_eplb_counted_rows(num_tokens, chunk_start_)


# gpu_model_runner.py: the real count and micro-batch starts, under DP too.


def decide_rows_are_placed(self):
    # The MoE runner tells the router where each row sits in this rank's
    # batch; prefill context parallelism gathers it in a way it does not, so
    # there every row counts.
    rows_are_placed = self.parallel_config.prefill_context_parallel_size == 1
    return rows_are_placed


def publish_real_rows(
    self, num_tokens_unpadded, rows_are_placed, ubatch_slices_padded
) -> None:
    """The real count only where this rank's rows are the batch's own, and
    each micro-batch's first row."""
    self.eplb_state.set_real_token_count(
        num_tokens_unpadded if rows_are_placed else None,
        [ubatch.token_slice.start for ubatch in ubatch_slices_padded or ()],
    )


def count_all_rows_after_dummy_batch(self) -> None:
    if self.eplb_state is not None:
        self.eplb_state.set_real_token_count(None)


# Wrapped as four blocks deep in _dummy_run, where it lands.
# fmt: off
def no_real_tokens_in_dummy_batch(self, ubatch_slices_padded) -> None:
    if self.eplb_state is not None:
        # A dummy batch (capture, warm-up, an idle data-parallel rank) has no
        # real tokens; a captured graph keeps its micro-batch placement.
        starts = [
            ubatch.token_slice.start for ubatch in ubatch_slices_padded or ()
        ]
        self.eplb_state.set_real_token_count(0, starts)
