# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""Under data parallelism each rank records only its own real tokens.

Every rank of one data-parallel MoE step is simulated on one device: the
rows its router sees (a gather of every rank's padded block, a sequence-
parallel slice, DP chunks), the window DefaultMoERunner sets for it (with
the rank's groups and forward context faked), and the map+record kernel
with the rank's real-token count. The load summed over ranks must equal a
bincount of the physical ids of the real tokens, each counted once.
"""

from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

import vllm.model_executor.layers.fused_moe.runner.default_moe_runner as moe_runner
from tests.kernels.moe.eplb_utils import kernel_devices, redundant_map, topk_routing
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

DEVICES = kernel_devices()
NUM_LOGICAL = 12
TOP_K = 4


def routing(num_rows: int, seed: int) -> torch.Tensor:
    return topk_routing(num_rows, NUM_LOGICAL, TOP_K, seed)


class Rank:
    """One rank's DefaultMoERunner, its own code running (forward_impl and
    what it calls, forward_impl_chunked); faked are only what it talks to:
    the process groups (the gather hands back every rank's rows), the forward
    context, the quant method and the router. Hidden states carry each row's
    index; `routed` keeps, per routing, the rows the router saw and the
    window it was given."""

    def __init__(self, monkeypatch, *, naive, sp=False, dp_rank=0, ep_rank=0,
                 tp_rank=0, sizes=None, gathered_rows=None, chunk=None,
                 longest=None, ubatch_starts=(), ubatch=0, pcp=1):  # fmt: skip
        self.routed = []
        runner = object.__new__(moe_runner.DefaultMoERunner)
        sp_size = 2 if sp else 1
        runner.moe_config = SimpleNamespace(
            moe_parallel_config=SimpleNamespace(
                enable_eplb=True,
                use_deepep_ll_kernels=chunk is not None,  # DP chunking
                use_mori_kernels=False,
                use_fi_nvl_two_sided_kernels=False,
                use_nixl_ep_kernels=False,
            ),
            is_sequence_parallel=sp,
            sp_size=sp_size,
            dp_size=2 if naive else 1,
            pcp_size=pcp,
            max_num_tokens=chunk,
        )
        runner.quant_method = SimpleNamespace(
            supports_internal_mk=not naive,  # without a modular kernel: gathered
            is_monolithic=False,
            mk_owns_shared_expert=False,
            apply=lambda **kwargs: kwargs["x"],
        )
        runner.router = SimpleNamespace(
            eplb_counted_rows=None,
            eplb_state=SimpleNamespace(ubatch_token_starts=list(ubatch_starts)),
            select_experts=self._route,
        )
        runner.enable_dbo = bool(ubatch_starts)
        runner.gate = runner.shared_experts = runner.shared_experts_stream = None
        buffer = torch.zeros(chunk, 1) if chunk else None
        runner.batched_hidden_states = runner.batched_router_logits = buffer
        self.runner = runner
        monkeypatch.setenv("VLLM_ENABLE_MOE_DP_CHUNK", "1")
        metadata = SimpleNamespace(
            get_chunk_sizes_across_dp_rank=lambda: sizes,
            max_tokens_across_dp_cpu=longest,
            chunked_sizes=lambda *args: nullcontext(),
            sp_local_sizes=lambda *args: nullcontext(),
        )
        context = SimpleNamespace(dp_metadata=metadata)
        dp_group = SimpleNamespace(rank_in_group=dp_rank)
        ep_group = SimpleNamespace(
            rank_in_group=ep_rank,
            dispatch_router_logits=lambda *args: (gathered_rows, gathered_rows),
            combine=lambda hidden_states, *args: hidden_states,
        )
        monkeypatch.setattr(moe_runner, "get_forward_context", lambda: context)
        monkeypatch.setattr(moe_runner, "get_dp_group", lambda: dp_group)
        monkeypatch.setattr(moe_runner, "get_ep_group", lambda: ep_group)
        monkeypatch.setattr(
            moe_runner, "get_tensor_model_parallel_rank", lambda: tp_rank
        )
        monkeypatch.setattr(moe_runner, "dbo_current_ubatch_id", lambda: ubatch)

    def _route(self, hidden_states, router_logits):
        rows = hidden_states[:, 0].long()
        self.routed.append((rows, self.runner.router.eplb_counted_rows))
        return None, None

    def forward(self, num_rows: int):
        rows = torch.arange(num_rows, dtype=torch.float32)[:, None]
        runner = self.runner
        # v0.19 picks the chunked path in the custom op; v0.18 in forward_impl.
        legacy = not hasattr(moe_runner.DefaultMoERunner, "_maybe_dispatch")
        if runner.use_dp_chunking and not legacy:
            runner.forward_impl_chunked(None, rows, rows, None)
        else:
            runner.forward_impl(None, rows, rows, None)
        return self.routed


class Recorder:
    """The kernel on one device, each call's load summed over ranks; the
    reference load is the bincount of the given real rows' mapped ids."""

    def __init__(self, device):
        maps = redundant_map(device, NUM_LOGICAL, map_slots=2)
        self.l2p, self.counts, self.num_physical = maps
        self.device = device
        self.load = torch.zeros(self.num_physical, dtype=torch.int64)
        self.flag = torch.ones((), dtype=torch.bool, device=device)

    def route(self, ids, real_count, window):
        ids = ids.to(self.device)
        load = torch.zeros(self.num_physical, dtype=torch.int32, device=self.device)
        real = torch.tensor(real_count, device=self.device)
        maps = (self.l2p, self.counts, self.flag)
        out = eplb_map_and_record_triton(ids, load, *maps, real, counted_rows=window)
        once = load.clone()
        # A repeat call of the same layer (a direct launch on a GPU).
        again = eplb_map_and_record_triton(ids, load, *maps, real, counted_rows=window)
        assert torch.equal(out, again) and torch.equal(load, 2 * once)
        unrestricted = eplb_map_and_record_triton(ids, torch.zeros_like(load), *maps)
        assert torch.equal(out, unrestricted)  # the window changes no mapping
        self.load += once.cpu().long()
        return out.cpu().long()

    def reference(self, out, real_rows):
        ids = out[real_rows].flatten()
        return torch.bincount(ids[ids >= 0], minlength=self.num_physical)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "blocks,real",
    [([8, 8, 8, 8], [3, 0, 5, 1]), ([4, 1, 6, 2], [4, 0, 5, 2]), ([5], [5])],
    ids=["graph-padded", "eager", "one-rank"],
)
def test_gathered_rows_each_rank_counts_its_own_block(
    monkeypatch, device, blocks, real
):
    """Naive dispatch: every rank routes the gather of all padded blocks."""
    recorder = Recorder(device)
    ids = routing(sum(blocks), seed=1)
    gathered_rows = torch.arange(sum(blocks), dtype=torch.float32)[:, None]
    expected = torch.zeros(recorder.num_physical, dtype=torch.int64)
    for dp_rank, (block, num_real) in enumerate(zip(blocks, real)):
        rank = Rank(monkeypatch, naive=True, dp_rank=dp_rank, sizes=blocks,
                    gathered_rows=gathered_rows)  # fmt: skip
        [(rows, window)] = rank.forward(block)
        out = recorder.route(ids[rows], num_real, window)
        first = sum(blocks[:dp_rank])
        expected += recorder.reference(out, slice(first, first + num_real))
    assert torch.equal(recorder.load, expected)
    assert int(recorder.load.sum()) == sum(real) * TOP_K


@pytest.mark.parametrize("device", DEVICES)
def test_gather_of_sequence_parallel_slices(monkeypatch, device):
    """DP 2 x TP 2, sequence-parallel MoE: each DP batch (padded to 6 and 7
    rows, 5 and 2 real) is sliced over its TP ranks, and the EP group gathers
    the four slices."""
    tp = 2
    padded, real = [6, 7], [5, 2]
    slice_rows = [(n + tp - 1) // tp for n in padded]
    sizes = [slice_rows[d] for d in range(len(padded)) for _ in range(tp)]
    recorder = Recorder(device)
    ids = routing(sum(sizes), seed=2)
    gathered_rows = torch.arange(sum(sizes), dtype=torch.float32)[:, None]
    expected = torch.zeros(recorder.num_physical, dtype=torch.int64)
    for ep_rank, size in enumerate(sizes):
        dp_rank, tp_rank = divmod(ep_rank, tp)
        rank = Rank(
            monkeypatch, naive=True, sp=True, dp_rank=dp_rank, ep_rank=ep_rank,
            tp_rank=tp_rank, sizes=sizes, gathered_rows=gathered_rows,
        )  # fmt: skip
        [(rows, window)] = rank.forward(size)
        out = recorder.route(ids[rows], real[dp_rank], window)
        first = sum(sizes[:ep_rank])
        real_in_slice = max(0, min(size, real[dp_rank] - tp_rank * size))
        expected += recorder.reference(out, slice(first, first + real_in_slice))
    assert torch.equal(recorder.load, expected)
    assert int(recorder.load.sum()) == sum(real) * TOP_K


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sp", [False, True])
@pytest.mark.parametrize("chunk", [None, 4])
@pytest.mark.parametrize("padding", [3, 0])
def test_local_rows_and_dp_chunks_in_lockstep(monkeypatch, device, sp, chunk, padding):
    """Modular kernels route this rank's own 10 rows, the last `padding` of
    them padding (with sequence parallelism: TP rank 1's slice, rows 10-19
    of the DP rank's batch). In DP chunks of 4 while another rank has 16
    rows per slice, this rank runs out after three chunks and re-routes its
    last row in lockstep: counted once, if real."""
    num_rows = 10
    tp_rank, slice_offset = (1, num_rows) if sp else (0, 0)
    num_real = slice_offset + num_rows - padding
    recorder = Recorder(device)
    ids = routing(num_rows, seed=3)
    rank = Rank(monkeypatch, naive=False, sp=sp, tp_rank=tp_rank, chunk=chunk,
                longest=32 if sp else 16)  # fmt: skip
    routed = rank.forward(num_rows)
    assert len(routed) == (4 if chunk else 1)
    expected = torch.zeros(recorder.num_physical, dtype=torch.int64)
    seen = torch.zeros(num_rows, dtype=torch.bool)
    for rows, window in routed:
        out = recorder.route(ids[rows], num_real, window)
        first_time_real = (rows + slice_offset < num_real) & ~seen[rows]
        seen[rows] = True
        expected += recorder.reference(out, first_time_real)
    assert torch.equal(recorder.load, expected)
    assert int(recorder.load.sum()) == (num_rows - padding) * TOP_K


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_real", [11, 8, 3])
def test_micro_batches_count_their_own_real_rows(monkeypatch, device, num_real):
    """DBO: a 16-row padded batch split at 8 runs as two micro-batches, each
    routed on its own; the padding is in the second (or both, with 3 real)."""
    starts, num_rows = [0, 8], 16
    recorder = Recorder(device)
    ids = routing(num_rows, seed=5)
    expected = torch.zeros(recorder.num_physical, dtype=torch.int64)
    for ubatch, start in enumerate(starts):
        rank = Rank(monkeypatch, naive=False, ubatch_starts=starts, ubatch=ubatch)
        [(rows, window)] = rank.forward(8)
        out = recorder.route(ids[start + rows], num_real, window)
        expected += recorder.reference(out, start + rows < num_real)
    assert torch.equal(recorder.load, expected)
    assert int(recorder.load.sum()) == num_real * TOP_K


@pytest.mark.parametrize("device", DEVICES)
def test_every_row_and_every_rank_counted_without_the_window(monkeypatch, device):
    """What the window fixes: with no window and no real count, the gathered
    step of test_gathered_rows_... records padding, on every rank."""
    blocks = [8, 8, 8, 8]
    recorder = Recorder(device)
    gathered = routing(sum(blocks), seed=1)
    for _ in blocks:
        recorder.route(gathered, 2**62, None)
    assert int(recorder.load.sum()) == len(blocks) * sum(blocks) * TOP_K  # 4 x 32 rows


def test_every_row_counts_under_prefill_context_parallelism(monkeypatch):
    """PCP gathers again after dispatch (the model runner publishes "all
    rows" there): the router gets no window, as before this patch."""
    gathered_rows = torch.arange(8, dtype=torch.float32)[:, None]
    pcp_group = SimpleNamespace(
        all_gather=lambda tensor, dim: torch.cat([tensor] * 2),
        reduce_scatter=lambda tensor, dim: tensor[: len(tensor) // 2],
    )
    monkeypatch.setattr(moe_runner, "get_pcp_group", lambda: pcp_group)
    rank = Rank(monkeypatch, naive=True, sizes=[4, 4], gathered_rows=gathered_rows,
                pcp=2, dp_rank=1)  # fmt: skip
    rank.runner.router.eplb_counted_rows = (0, 1, 0)  # a stale window
    [(rows, window)] = rank.forward(4)
    assert window is None and len(rows) == 16


def test_no_window_without_eplb(monkeypatch):
    rank = Rank(monkeypatch, naive=False)
    rank.runner.moe_config.moe_parallel_config.enable_eplb = False
    [(_, window)] = rank.forward(4)
    assert window is None


@pytest.mark.parametrize(
    "args,window",
    [
        ((5, 0), (0, 5, 0)),
        ((5, 3), (0, 5, 3)),
        ((5, 0, [4, 5, 6], 0), (0, 4, 0)),
        ((5, 0, [4, 5, 6], 1), (4, 9, 0)),
        ((3, 6, [3, 3, 4, 4], 3), (10, 14, 6)),
    ],
)
def test_counted_rows(args, window):
    assert moe_runner.eplb_counted_rows(*args) == window


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_one_captured_graph_keeps_the_window_and_reads_each_real_count():
    """A rank's block of a gathered step (rows 8-15 of 24), captured once:
    each replay counts that block's real rows for the count set before it."""
    recorder = Recorder("cuda")
    ids = routing(24, seed=4).cuda()
    window = moe_runner.eplb_counted_rows(8, 0, [8, 8, 8], 1)
    load = torch.zeros(recorder.num_physical, dtype=torch.int32, device="cuda")
    real = torch.zeros((), dtype=torch.int64, device="cuda")
    maps = (recorder.l2p, recorder.counts, recorder.flag)

    def step():
        return eplb_map_and_record_triton(ids, load, *maps, real, counted_rows=window)

    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(2):  # compile, then a direct launch, before capture
            step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    for num_real in (5, 0, 8, 2):
        load.zero_()
        real.fill_(num_real)
        graph.replay()
        torch.cuda.synchronize()
        expected = recorder.reference(out.cpu().long(), slice(8, 8 + num_real))
        assert torch.equal(load.cpu().long(), expected)
        assert int(load.sum()) == num_real * TOP_K


def test_eplb_state_shares_the_micro_batch_starts_with_every_layer():
    """set_real_token_count fills the device count and updates the one list
    of micro-batch starts in place (the layers hold that list)."""
    eplb_state = pytest.importorskip("vllm.distributed.eplb.eplb_state")
    if not hasattr(eplb_state, "EplbState"):
        pytest.skip("the GPU machine's stand-in holds only EplbLayerState")
    EplbState, ALL_ROWS_ARE_REAL = eplb_state.EplbState, eplb_state.ALL_ROWS_ARE_REAL

    state = EplbState.__new__(EplbState)
    state.real_token_count = torch.zeros((), dtype=torch.int64)
    state.ubatch_token_starts = shared = []
    state.set_real_token_count(11, [0, 8])
    assert int(state.real_token_count) == 11 and shared == [0, 8]
    state.set_real_token_count(None)
    assert int(state.real_token_count) == ALL_ROWS_ARE_REAL and shared == []
    assert state.ubatch_token_starts is shared
