"""Batches are padded to a CUDA-graph capture size, and the padded rows go
through the router like real tokens: the map+record kernel counts them as
expert load. Decode batches are padded most (a batch of 5 runs as 8; one
of 129 as 136 or 256, depending on the capture sizes), and the padded rows
carry stale token ids, so the counts they add are routing noise that the
rearrangement then balances for.

Give EplbState a second shared 0-dim device tensor, real_token_count,
handed to every layer with the record flag. The GPU model runner fills it
with the batch's unpadded token count before the forward and resets it to
"all rows" after, so the drafter's forwards keep today's behaviour. The
kernel still maps every row, but counts only tokens below that count. The
value is read on the device, so replays of one captured graph with
different real counts record each correctly.

With data parallelism or micro-batching the router's rows are not "real
tokens, then padding" (naive dispatch gathers each rank's padded block,
chunked and sequence-parallel MoE slice them), so there the runner keeps
"all rows" and nothing changes.
"""

from eplb_fork.codemod import (
    add_call_keyword,
    add_members,
    add_parameter,
    bring_file,
    if_block,
    insert_after,
    insert_before,
    python_file,
    statement,
    with_block,
)

SUBJECT = "[EPLB] Do not record padded tokens as expert load"
ORIGIN = "vendor, https://github.com/vllm-project/vllm/pull/38128"
DATE = "2026-11-29T12:02:00+00:00"

EPLB_STATE = "vllm/distributed/eplb/eplb_state.py"
BASE_ROUTER = "vllm/model_executor/layers/fused_moe/router/base_router.py"
MODEL_RUNNER = "vllm/v1/worker/gpu_model_runner.py"
KERNEL = "_eplb_map_and_record_kernel"
LAUNCHER = "eplb_map_and_record_triton"

LAYER_FIELD = '''
real_token_count: torch.Tensor | None = None
"""0-dim int64 device tensor shared by all layers: rows below it are real."""
'''

STATE_ATTRIBUTE = '''
self.real_token_count: torch.Tensor | None = None
"""
How many leading rows of the coming forward are real tokens (rows past it
are batch padding): a 0-dim int64 device tensor shared with every layer like
`should_record_tensor`, so captured CUDA graphs read the current value.
"""
'''

ALLOCATE_REAL_TOKEN_COUNT = """
if self.real_token_count is None and layer_states:
    self.real_token_count = torch.full(
        (), ALL_ROWS_ARE_REAL, dtype=torch.int64, device=self.device
    )
"""

SET_REAL_TOKEN_COUNT = '''
def set_real_token_count(self, num_tokens: int | None) -> None:
    """Rows of the coming forward that are real tokens; None: all rows."""
    if self.real_token_count is not None:
        self.real_token_count.fill_(
            ALL_ROWS_ARE_REAL if num_tokens is None else num_tokens
        )
'''

ALL_ROWS = """

# A real-token count that no batch reaches: every row is counted.
ALL_ROWS_ARE_REAL = 2**62
"""

COUNT_REAL_ROWS_ONLY = """
if COUNT_REAL_ONLY:
    # Rows past the real tokens are batch padding: mapped like the rest,
    # never counted. Read on the device, so a CUDA-graph replay with another
    # real count needs no recapture.
    counted = counted & (token < tl.load(real_tokens_ptr))
"""

PUBLISH_REAL_TOKENS = """
if self.eplb_state is not None:
    # Only a tail of padding is cut: gathered (data parallel) and sliced
    # (micro-batch) layouts interleave it, so there every row counts.
    tail_is_padding = (
        self.parallel_config.data_parallel_size == 1 and ubatch_slices is None
    )
    self.eplb_state.set_real_token_count(
        num_tokens_unpadded if tail_is_padding else None
    )
"""

RESET_REAL_TOKENS = """
if self.eplb_state is not None:
    # The drafter's forwards are padded their own way: count all their rows.
    self.eplb_state.set_real_token_count(None)
"""


def apply(tree):
    with python_file(tree, EPLB_STATE) as src:
        insert_after(src, "", statement("logger = init_logger(__name__)"), ALL_ROWS)
        add_members(src, "EplbLayerState", LAYER_FIELD, after="should_record_tensor")
        insert_before(
            src, "EplbState.__init__", if_block('self.device.type == "cuda"'), STATE_ATTRIBUTE
        )
        insert_after(
            src, "EplbState._init_should_record_tensor",
            if_block("self.should_record_tensor is None and layer_states"),
            ALLOCATE_REAL_TOKEN_COUNT,
        )  # fmt: skip
        insert_after(
            src, "EplbState._init_should_record_tensor",
            statement("layer_state.should_record_tensor = self.should_record_tensor"),
            "layer_state.real_token_count = self.real_token_count",
        )  # fmt: skip
        add_members(src, "EplbState", SET_REAL_TOKEN_COUNT, after="_init_should_record_tensor")

    with python_file(tree, BASE_ROUTER) as src:
        add_parameter(src, KERNEL, "real_tokens_ptr", before="BLOCK_SIZE")
        add_parameter(src, KERNEL, "COUNT_REAL_ONLY", before="BLOCK_SIZE",
                      annotation="tl.constexpr")  # fmt: skip
        insert_after(
            src, KERNEL,
            statement("counted = valid & record & (physical >= 0) & (physical < num_physical)"),
            COUNT_REAL_ROWS_ONLY,
        )  # fmt: skip
        for function in (LAUNCHER, "eplb_map_to_physical_and_record"):
            add_parameter(src, function, "real_token_count",
                          annotation="torch.Tensor | None", default="None")  # fmt: skip
        add_call_keyword(src, LAUNCHER, f"{KERNEL}[...]", "real_tokens_ptr", "real_token_count")
        add_call_keyword(
            src, LAUNCHER, f"{KERNEL}[...]", "COUNT_REAL_ONLY", "real_token_count is not None"
        )
        add_call_keyword(
            src, "BaseRouter._apply_eplb_mapping", "eplb_map_to_physical_and_record",
            "real_token_count", "self.eplb_state.real_token_count",
        )  # fmt: skip

    with python_file(tree, MODEL_RUNNER) as src:
        forward = with_block("set_forward_context")
        insert_before(src, "GPUModelRunner.execute_model", forward, PUBLISH_REAL_TOKENS)
        insert_after(src, "GPUModelRunner.execute_model", forward, RESET_REAL_TOKENS)

    bring_file(tree, "tests/kernels/moe/test_eplb_padded_tokens.py")
