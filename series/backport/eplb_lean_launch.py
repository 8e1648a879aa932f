"""The map+record call costs more host time than the kernel takes on the GPU
at decode sizes, and most of it is Triton's generic launch path (binding
15 arguments, specializing each, hashing a cache key) plus Python that
recomputes per call what a layer fixes once.

Every call of one MoE layer passes the same load view, maps, flag and
real-token count. Keep per layer (found by the load view's identity, the
tensors held weakly) what they fix: the shapes, the histogram size,
whether they allow a direct launch (contiguous and 16-byte aligned), and
the compiled kernel of each launch variant after its first, regular
launch. A repeat call then launches that kernel through its launcher on
the current stream; the variant key holds everything else Triton
specializes on (id and output dtypes, top-k, the tile, whether the count
is 1 or a multiple of 16). CUDA-graph capture records the same launch.
The compiled kernel's launcher is an internal Triton interface, so the
direct launch is taken only on the Triton releases it was verified on
(3.6, vLLM 0.19's; 3.7 and 3.8, on the H200); misaligned ids, counts past
32 bits, Triton's interpreter, installed launch hooks (profilers) and
every other Triton release take the regular path. Tile sizing uses integer
math: triton.cdiv is a JIT function, microseconds per call from Python.

The output is allocated in the index dtype the router hands on
(`out_dtype`, which BaseRouter passes from its indices-type getter), and
the kernel stores in that dtype: `_convert_indices_dtype` no longer copies
the mapped ids. The kernel reads ids in their own dtype, as before.

Measured with benchmarks/kernels/benchmark_eplb_map_record.py on an H200
(eager host time per call, median over both shapes, both routings, 1 to
32768 tokens, recording on and off; revisions interleaved in one run):

  revision                          us     x empty Triton launch
  PR #36261 kernel                  37.4   1.97
  per-tile histogram (previous)     50.4   2.65
  this                              23.7   1.25
  empty Triton launch               19.0   1.00

Of this patch's 15.0 us in a breakdown run (an empty launch took 12.1 us
there), the compiled kernel's launcher takes 6.8 and allocating the output
2.2; the rest is the wrapper's Python (the per-layer lookup 0.3). CUDA-graph
replay time is unchanged (within 0.03 us of the previous commit at every
size).
"""

from eplb_fork.codemod import (
    Fragments,
    add_call_keyword,
    add_definitions,
    add_parameter,
    bring_file,
    call_statement,
    defines,
    insert_before,
    python_file,
    replace_statement,
    statement,
)
from series.backport.sites import BASE_ROUTER, KERNEL, LAUNCHER, PASS_THROUGH

SUBJECT = "[EPLB] Launch map+record without Triton's per-call binding"
ORIGIN = "vendor"
DATE = "2026-11-29T15:10:00+00:00"

# What the launcher keeps per MoE layer, in the order they go before it.
LAYER_STATE = (
    "_direct_launch_verified",
    "_LayerLaunch",
    "_layer_launches",
    "_layer_launch",
    "_launch_hooks_installed",
)


def apply(tree):
    code = Fragments("series/shared/fragments/eplb_lean_launch.py")
    store = code.body("store_in_output_dtype")
    with python_file(tree, BASE_ROUTER) as src:
        # isort's place for it: straight imports first in the standard library.
        insert_before(
            src, "", anchor=statement("from abc import abstractmethod"), code="import weakref"
        )
        replace_statement(src, KERNEL, anchor=call_statement("tl.store"), code=store)
        # The launcher is rewritten as a whole (little of its body stays),
        # once: later patches edit it further.
        replace_statement(
            src,
            "",
            anchor=defines(LAUNCHER),
            code=code.definition(LAUNCHER),
            done=defines("_layer_launch"),
        )
        add_definitions(
            src, code="".join(map(code.definition, LAYER_STATE)), before=defines(LAUNCHER)
        )
        add_parameter(
            src, PASS_THROUGH, name="out_dtype", annotation="torch.dtype | None", default="None"
        )
        # The indices-type getter is asked here rather than passed in, so
        # subclasses overriding _apply_eplb_mapping(topk_ids) keep working.
        add_call_keyword(
            src,
            "BaseRouter._apply_eplb_mapping",
            callee=PASS_THROUGH,
            keyword="out_dtype",
            value="self._get_indices_type()",
        )
    bring_file(tree, "tests/kernels/moe/test_eplb_lean_launch.py")
