"""When a MoE method has no modular kernel (`moe_kernel is None`: e.g.
MXFP4 without an experts class, out-of-tree methods) and DP > 1, naive
dispatch gathers the hidden states and router logits of every DP rank
before routing, so every EP rank routes the whole gathered batch. The
router masks padding with `offs < num_unpadded_tokens * top_k`, this
rank's own real count, as flat offsets into the gathered batch: every rank
counts rows [0, N_local), the head of DP rank 0's block (with its padding
when N_local is larger than rank 0's real count), and never its own
tokens. Take three DP ranks with 5, 7 and 3 real tokens: rank 1 counts
rank 0's 5 tokens and 2 of rank 1's rows; rank 2 counts 3 of rank 0's.

The kernel now counts a row only inside a window of rows [first, end) the
router passes as host ints, the unpadded count being of the window's rows;
the default window is every row, so every other path counts as before.
MoERunner sets the window on its router before dispatch: under naive
dispatch across DP, this rank's block of the gather, from the sizes the
gather itself uses (DPMetadata's local sizes) and this rank's index in the
DP group; otherwise every row. Each EP rank then counts its own tokens, so
the all-reduced load counts every real token once per tensor-parallel rank
of its DP rank instead of rank 0's tokens once per EP rank. Sequence
parallelism and prefill context parallelism, which gather in other
groups, keep counting every row.

The window is fixed by the padded sizes, which every rank agrees on and a
CUDA graph is captured for, so a replay keeps it. Triton does not
specialize the window's ints (do_not_specialize), so the lean launch's
variants are unchanged; a window past int32 takes the regular launch.
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    add_members,
    add_parameter,
    assigns,
    bring_file,
    if_block,
    import_names,
    insert_after,
    insert_before,
    insert_element,
    python_file,
    replace_decorator,
    replace_statement,
)
from series.current.sites import (
    BASE_ROUTER,
    ENTRY,
    EPLB_TRITON,
    KERNEL,
    LAUNCHER,
    MOE_RUNNER,
    SHARED_MAP,
    shared_map,
)

SUBJECT = "[EPLB] Count only this rank's rows of a batch gathered before routing"
ORIGIN = "vendor"
DATE = "2026-11-30T08:00:00+00:00"

UNSPECIALIZED = 'triton.jit(do_not_specialize=["count_first", "count_end"])'
ROWS = "tuple[int, int] | None"
BOUNDS = ("count_first", "count_end")


def apply(tree):
    code = Fragments("series/current/fragments/eplb_dp_own_rows.py")
    if shared_map(tree):
        # 0.34 on: the mask is upstream's shared eplb_map_and_record's; its
        # other caller (MegaMoE's prepare) passes no window and counts as before.
        with python_file(tree, EPLB_TRITON) as src:
            for bound in BOUNDS:
                add_parameter(src, SHARED_MAP, name=bound, default="None")
            own = code.body("count_own_rows_in_shared_map")
            replace_statement(
                src,
                SHARED_MAP,
                anchor=if_block("num_unpadded_tokens is not None"),
                code=own,
                done=assigns("row"),
                keep_comments=False,
            )
    with python_file(tree, BASE_ROUTER) as src:
        for bound in BOUNDS:
            add_parameter(src, KERNEL, name=bound, before="num_shards")
        replace_decorator(src, KERNEL, old="triton.jit", new=UNSPECIALIZED)
        if shared_map(tree):
            for bound in BOUNDS:
                add_call_keyword(src, KERNEL, callee=SHARED_MAP, keyword=bound, value=bound)
        else:
            own = code.body("count_own_rows_only")
            replace_statement(
                src,
                KERNEL,
                anchor=if_block("HAS_NUM_UNPADDED"),
                code=own,
                done=assigns("own_row"),
                keep_comments=False,
            )

        add_parameter(src, LAUNCHER, name="counted_rows", annotation=ROWS, default="None")
        insert_before(
            src, LAUNCHER, anchor=assigns("args"), code=code.body("window_of_counted_rows")
        )
        insert_element(
            src, LAUNCHER, anchor=assigns("args"), element="*window", after="num_active_experts"
        )
        insert_after(
            src, LAUNCHER, anchor=assigns("direct"), code=code.body("direct_only_for_int32_windows")
        )
        add_parameter(src, ENTRY, name="counted_rows", annotation=ROWS, default="None")
        add_call_keyword(src, ENTRY, callee=LAUNCHER, keyword="counted_rows", value="counted_rows")

        attribute = code.body("counted_rows_attribute")
        insert_after(src, "BaseRouter.__init__", anchor=assigns("self.capture_fn"), code=attribute)
        add_call_keyword(
            src,
            "BaseRouter._apply_eplb_mapping",
            callee=ENTRY,
            keyword="counted_rows",
            value="self.eplb_counted_rows",
        )

    with python_file(tree, MOE_RUNNER) as src:
        import_names(src, "vllm.distributed", "get_dp_group")
        add_members(src, "MoERunner", code=code.members("MoERunner"), after="_maybe_dispatch")
        dispatch = "MoERunner._maybe_dispatch"
        window = code.body("set_router_window")
        insert_before(src, dispatch, anchor=if_block("self.do_naive_dispatch_combine"), code=window)
    bring_file(tree, "tests/kernels/moe/test_eplb_own_rows.py")
    bring_file(tree, "tests/distributed/eplb/test_eplb_gathered_rows.py")
