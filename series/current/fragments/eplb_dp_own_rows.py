"""Fragment: the current line's window of counted rows: upstream's router
(vllm/model_executor/layers/fused_moe/router/base_router.py; from 0.34 its
shared eplb_map_and_record in fused_moe/eplb_triton.py) and MoE runner
(vllm/model_executor/layers/fused_moe/runner/moe_runner.py).
The patch `eplb_dp_own_rows` of the current line puts each piece where the
patch says. The imports stand for those files' own.
"""

from vllm.distributed import get_dp_group
from vllm.forward_context import get_forward_context
from vllm.triton_utils import tl


def count_own_rows_only(
    token_idx, count_first, count_end, num_unpadded_tokens_ptr, HAS_NUM_UNPADDED
):
    # Only rows [count_first, count_end) are this rank's (other ranks' rows
    # are in the batch when it was gathered before routing); the unpadded
    # count is of this rank's rows.
    own_row = (token_idx >= count_first) & (token_idx < count_end)
    if HAS_NUM_UNPADDED:
        num_unpadded_tokens = tl.load(num_unpadded_tokens_ptr)
        is_unpadded = own_row & (token_idx - count_first < num_unpadded_tokens)
    else:
        is_unpadded = own_row
    return is_unpadded


def count_own_rows_in_shared_map(
    record, token_idx, count_first, count_end, num_unpadded_tokens
):
    """0.34 on: replaces eplb_map_and_record's `if num_unpadded_tokens is not
    None:` block."""
    # Only rows [count_first, count_end) are this rank's (other ranks' rows
    # are in the batch when it was gathered before routing; None: every row,
    # as the MegaMoE prepare kernel passes); the unpadded count is of this
    # rank's rows.
    row = token_idx
    if count_first is not None:
        record &= (token_idx >= count_first) & (token_idx < count_end)
        row = token_idx - count_first
    if num_unpadded_tokens is not None:
        record &= row < tl.load(num_unpadded_tokens)
    return record


def window_of_counted_rows(numel, num_active_experts, counted_rows):
    rows = numel // num_active_experts
    window = (0, rows) if counted_rows is None else counted_rows
    return window


def direct_only_for_int32_windows(direct, window):
    # Triton passes the window's ints unspecialized, but in the width they fit.
    direct = direct and min(window) >= -(2**31) and max(window) < 2**31
    return direct


def counted_rows_attribute(self):
    # This rank's rows [first, end) of a batch gathered across ranks before
    # routing, set by the MoE runner per forward: EPLB counts only these
    # (None: every row).
    self.eplb_counted_rows: tuple[int, int] | None = None


class MoERunner:

    def _eplb_own_rows(self) -> tuple[int, int] | None:
        """This rank's rows [first, end) of the batch that naive dispatch
        gathers across the DP group before routing (in group order, sized by
        DPMetadata's local sizes, as the gather itself is). None, counting
        every row, without that gather, and under sequence or prefill-context
        parallelism, whose gathers this does not follow."""
        config = self.moe_config
        if (
            not self.do_naive_dispatch_combine
            or config.dp_size == 1
            or config.is_sequence_parallel
            or config.pcp_size > 1
        ):
            return None
        dp_metadata = get_forward_context().dp_metadata
        if dp_metadata is None:
            return None
        sizes = dp_metadata.get_chunk_sizes_across_dp_rank()
        rank = get_dp_group().rank_in_group
        first = sum(sizes[:rank])
        return first, first + sizes[rank]


def set_router_window(self):
    self.router.eplb_counted_rows = self._eplb_own_rows()
