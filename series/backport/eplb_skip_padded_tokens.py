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
from series.backport.sites import BASE_ROUTER, EPLB_STATE, KERNEL, LAUNCHER, MODEL_RUNNER

SUBJECT = "[EPLB] Do not record padded tokens as expert load"
ORIGIN = "vendor, https://github.com/vllm-project/vllm/pull/38128"
DATE = "2026-11-29T12:02:00+00:00"


def apply(tree):
    code = Fragments("series/backport/fragments/eplb_skip_padded_tokens.py")
    with python_file(tree, EPLB_STATE) as src:
        insert_after(
            src,
            "",
            anchor=assigns("logger"),
            code=after_blank_line(code.definition("ALL_ROWS_ARE_REAL")),
        )
        add_members(
            src, "EplbLayerState", code=code.members("EplbLayerState"), after="should_record_tensor"
        )
        insert_before(
            src,
            "EplbState.__init__",
            anchor=if_block('self.device.type == "cuda"'),
            code=code.body("declare_real_token_count"),
        )
        insert_after(
            src,
            "EplbState._init_should_record_tensor",
            anchor=if_block("self.should_record_tensor is None and layer_states"),
            code=code.body("allocate_real_token_count"),
        )
        insert_after(
            src,
            "EplbState._init_should_record_tensor",
            anchor=assigns("layer_state.should_record_tensor"),
            code="layer_state.real_token_count = self.real_token_count",
        )
        add_members(
            src, "EplbState", code=code.members("EplbState"), after="_init_should_record_tensor"
        )

    with python_file(tree, BASE_ROUTER) as src:
        add_parameter(src, KERNEL, name="real_tokens_ptr", before="BLOCK_SIZE")
        add_parameter(
            src, KERNEL, name="COUNT_REAL_ONLY", before="BLOCK_SIZE", annotation="tl.constexpr"
        )
        insert_after(src, KERNEL, anchor=assigns("counted"), code=code.body("count_real_rows_only"))
        for function in (LAUNCHER, "eplb_map_to_physical_and_record"):
            add_parameter(
                src,
                function,
                name="real_token_count",
                annotation="torch.Tensor | None",
                default="None",
            )
        add_call_keyword(
            src,
            LAUNCHER,
            callee=f"{KERNEL}[...]",
            keyword="real_tokens_ptr",
            value="real_token_count",
        )
        add_call_keyword(
            src,
            LAUNCHER,
            callee=f"{KERNEL}[...]",
            keyword="COUNT_REAL_ONLY",
            value="real_token_count is not None",
        )
        add_call_keyword(
            src,
            "BaseRouter._apply_eplb_mapping",
            callee="eplb_map_to_physical_and_record",
            keyword="real_token_count",
            value="self.eplb_state.real_token_count",
        )

    with python_file(tree, MODEL_RUNNER) as src:
        forward = with_block("set_forward_context")
        execute_model = "GPUModelRunner.execute_model"
        insert_before(
            src, execute_model, anchor=forward, code=code.body("publish_real_token_count")
        )
        insert_after(
            src, execute_model, anchor=forward, code=code.body("count_all_rows_after_forward")
        )

    bring_file(tree, "tests/kernels/moe/test_eplb_padded_tokens.py")
