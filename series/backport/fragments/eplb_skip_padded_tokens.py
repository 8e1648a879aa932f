"""Fragment: the real-token count that keeps batch padding out of the load.

The patch `eplb_skip_padded_tokens` puts this code into
vllm/distributed/eplb/eplb_state.py, the map+record kernel of
vllm/model_executor/layers/fused_moe/router/base_router.py and
vllm/v1/worker/gpu_model_runner.py, each piece where the patch says (the
constant: after eplb_state.py's logger). The imports are those the files have.
"""

import torch

from vllm.triton_utils import tl

# A real-token count that no batch reaches: every row is counted.
ALL_ROWS_ARE_REAL = 2**62


class EplbLayerState:

    real_token_count: torch.Tensor | None = None
    """0-dim int64 device tensor shared by all layers: rows below it are real."""


def declare_real_token_count(self) -> None:
    self.real_token_count: torch.Tensor | None = None
    """
    How many leading rows of the coming forward are real tokens (rows past it
    are batch padding): a 0-dim int64 device tensor shared with every layer like
    `should_record_tensor`, so captured CUDA graphs read the current value.
    """


def allocate_real_token_count(self, layer_states: list) -> None:
    if self.real_token_count is None and layer_states:
        self.real_token_count = torch.full(
            (), ALL_ROWS_ARE_REAL, dtype=torch.int64, device=self.device
        )


class EplbState:

    def set_real_token_count(self, num_tokens: int | None) -> None:
        """Rows of the coming forward that are real tokens; None: all rows."""
        if self.real_token_count is not None:
            self.real_token_count.fill_(
                ALL_ROWS_ARE_REAL if num_tokens is None else num_tokens
            )


def count_real_rows_only(counted, token, real_tokens_ptr, COUNT_REAL_ONLY) -> None:
    if COUNT_REAL_ONLY:
        # Rows past the real tokens are batch padding: mapped like the rest,
        # never counted. Read on the device, so a CUDA-graph replay with another
        # real count needs no recapture.
        counted = counted & (token < tl.load(real_tokens_ptr))


def publish_real_token_count(self, ubatch_slices, num_tokens_unpadded: int) -> None:
    if self.eplb_state is not None:
        # Only a tail of padding is cut: gathered (data parallel) and sliced
        # (micro-batch) layouts interleave it, so there every row counts.
        tail_is_padding = (
            self.parallel_config.data_parallel_size == 1 and ubatch_slices is None
        )
        self.eplb_state.set_real_token_count(
            num_tokens_unpadded if tail_is_padding else None
        )


def count_all_rows_after_forward(self) -> None:
    if self.eplb_state is not None:
        # The drafter's forwards are padded their own way: count all their rows.
        self.eplb_state.set_real_token_count(None)
