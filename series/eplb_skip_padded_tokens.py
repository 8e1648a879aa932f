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
    Fragments,
    add_call_keyword,
    add_members,
    add_parameter,
    after_blank_line,
    assigns,
    bring_file,
    if_block,
    insert_after,
    insert_before,
    python_file,
    with_block,
)
from series.sites import BASE_ROUTER, EPLB_STATE, KERNEL, LAUNCHER, MODEL_RUNNER

SUBJECT = "[EPLB] Do not record padded tokens as expert load"
ORIGIN = "vendor, https://github.com/vllm-project/vllm/pull/38128"
DATE = "2026-11-29T12:02:00+00:00"


def apply(tree):
    code = Fragments("series/fragments/eplb_skip_padded_tokens.py")
    with python_file(tree, EPLB_STATE) as src:
        insert_after(
            src, "", assigns("logger"), after_blank_line(code.definition("ALL_ROWS_ARE_REAL"))
        )
        add_members(
            src, "EplbLayerState", code.members("EplbLayerState"), after="should_record_tensor"
        )
        insert_before(
            src, "EplbState.__init__", if_block('self.device.type == "cuda"'),
            code.body("declare_real_token_count"),
        )  # fmt: skip
        insert_after(
            src, "EplbState._init_should_record_tensor",
            if_block("self.should_record_tensor is None and layer_states"),
            code.body("allocate_real_token_count"),
        )  # fmt: skip
        insert_after(
            src, "EplbState._init_should_record_tensor",
            assigns("layer_state.should_record_tensor"),
            "layer_state.real_token_count = self.real_token_count",
        )  # fmt: skip
        add_members(src, "EplbState", code.members("EplbState"), after="_init_should_record_tensor")

    with python_file(tree, BASE_ROUTER) as src:
        add_parameter(src, KERNEL, "real_tokens_ptr", before="BLOCK_SIZE")
        add_parameter(src, KERNEL, "COUNT_REAL_ONLY", before="BLOCK_SIZE",
                      annotation="tl.constexpr")  # fmt: skip
        insert_after(src, KERNEL, assigns("counted"), code.body("count_real_rows_only"))
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
        execute_model = "GPUModelRunner.execute_model"
        insert_before(src, execute_model, forward, code.body("publish_real_token_count"))
        insert_after(src, execute_model, forward, code.body("count_all_rows_after_forward"))

    bring_file(tree, "tests/kernels/moe/test_eplb_padded_tokens.py")
