"""Fragment: expert load counted into per-program shards, folded per step.

The patch `eplb_sharded_load` puts this code into the map+record kernel and
its launcher (vllm/model_executor/layers/fused_moe/router/base_router.py)
and into vllm/distributed/eplb/eplb_state.py, each piece where the patch
says. The imports stand for those files' own and for the names defined
there.
"""

import torch

from vllm.triton_utils import tl


# Copies of each layer's load row that the map+record kernel's programs count
# into (program p into copy p % K): with one row, every atomic of a layer lands
# on the same few cache lines and they queue in the L2. 64 copies bring
# recording to within 1.1-1.3x of skipping up to 8192 tokens on an H200 (256
# gain little more). K halves until a model's copies (K x layers x physical
# experts int32 counters) fit in `max_bytes`: 64 at 61 layers x 288 experts
# (4.3 MiB), 4 at 61 x 4600; always at least 1.
def expert_load_shard_count(
    num_layers: int, num_physical: int, max_shards: int = 64, max_bytes: int = 8 << 20
) -> int:
    """How many copies of each load row a model of this size counts into."""
    row_set_bytes = max(1, num_layers * num_physical) * 4
    shards = max_shards
    while shards > 1 and shards * row_set_bytes > max_bytes:
        shards //= 2
    return shards


def count_into_program_shard(
    expert_load_ptr, num_shards, num_physical, counted, physical
):
    # Each program counts into its own copy of the load row. Relaxed atomics: the
    # counts are read only after this kernel ends, by EplbState's fold (a later
    # kernel in stream order), so no atomic has to order other memory accesses.
    shard = expert_load_ptr + (tl.program_id(0) % num_shards) * num_physical
    tl.atomic_add(
        shard + tl.where(counted, physical, 0), 1, mask=counted, sem="relaxed"
    )


def check_load_layout(load):
    if not load.is_contiguous() or load.dim() not in (1, 2):
        raise ValueError(
            "expert_load_view must be contiguous, [num_physical] or "
            "[num_shards, num_physical]: it is counted into"
        )


def shapes_with_shards(self, load, l2p, replicas):
    num_shards = load.shape[0] if load.dim() == 2 else 1
    self.shapes = (replicas.shape[0], l2p.shape[1], load.shape[-1], num_shards)


def tile_of_256_ids():
    # One tile size for every call: with a shard per program, more programs
    # spread the atomics further; on an H200 these tiles, one atomic per id, match
    # or beat the larger histogram tiles at every size.
    block_size = 256
    return block_size


def four_warps():
    num_warps = 4
    return num_warps


def launcher_docstring() -> None:
    """The launcher's docstring (below), now with the shards."""
    """Map logical expert ids to physical ones and, when `record_enabled`
    (a 0-dim bool device tensor) is set, count each physical id's tokens into
    `expert_load_view` in place: a `[num_physical]` row, or `[num_shards,
    num_physical]` copies of it, program p counting into copy
    `p % num_shards`, whose sum over copies is the count.

    Ids outside `[0, num_logical)` map to -1 and are not counted. With
    `real_token_count`, only rows that are real tokens of this rank's batch are
    counted: `counted_rows` is `(first, end, shift)`, this rank's rows
    `[first, end)`, row r being row `r - first + shift` of its batch (default:
    every row, in place). The result has the shape of `topk_ids` and the dtype
    `out_dtype` (default: that of `topk_ids`).
    """


def record_paths_docstring() -> None:
    """tests/kernels/moe/test_eplb_record_paths.py's docstring (below)."""
    """The map+record kernel counts exactly on its one recording path, one
    relaxed atomic per id (the per-tile histogram is gone): the load added
    must equal the bincount of the physical ids the kernel returns for the
    counted rows, and nothing lands outside the load row.
    """


class EplbLayerState:
    """Members after `ubatch_token_starts` (current line: after
    `num_unpadded_tokens_tensors`)."""

    expert_load_shards: torch.Tensor | None = None
    """[num_shards, num_physical] copies of this layer's load row that the router
    counts into; EplbState.step folds them into the row. None: count into the
    row (expert_load_view) itself."""

    @property
    def expert_load_counter(self) -> torch.Tensor | None:
        """Where the router counts this layer's load."""
        if self.expert_load_shards is None:
            return self.expert_load_view
        return self.expert_load_shards


class EplbModelState:
    expert_load_shards: torch.Tensor | None = None
    """Copies of expert_load_pass that the layers count into, folded into it at
    each step. Shape: (num_moe_layers, num_shards, num_physical_experts)"""


class EplbState:
    def _shard_expert_load(self, model_state: EplbModelState) -> None:
        """Give each MoE layer of the model its rows of the model's shards to
        count into (see expert_load_shard_count), found by where its load view
        lies in expert_load_pass: the model maps layers to rows. A layer whose
        view lies elsewhere keeps counting into that view."""
        load_pass = model_state.expert_load_pass
        num_layers, num_physical = load_pass.shape
        shards_per_row = expert_load_shard_count(num_layers, num_physical)
        shape = (num_layers, shards_per_row, num_physical)
        shards = model_state.expert_load_shards
        if shards is None or tuple(shards.shape) != shape:
            shards = torch.zeros(shape, dtype=load_pass.dtype, device=load_pass.device)
            model_state.expert_load_shards = shards
        row_bytes = load_pass.stride(0) * load_pass.element_size()
        for layer in model_state.model.moe_layers:
            layer_state = getattr(layer, "eplb_state", None)
            if not isinstance(layer_state, EplbLayerState):
                continue
            layer_state.expert_load_shards = None
            view = layer_state.expert_load_view
            if view is None or tuple(view.shape) != (num_physical,):
                continue
            row, rest = divmod(view.data_ptr() - load_pass.data_ptr(), row_bytes)
            if rest == 0 and 0 <= row < num_layers:
                layer_state.expert_load_shards = shards[row]

    def _fold_expert_load(self, model_state: EplbModelState) -> None:
        """Add what the layers counted into their shards to expert_load_pass,
        and clear the shards."""
        shards = model_state.expert_load_shards
        if shards is not None:
            load_pass = model_state.expert_load_pass
            load_pass.add_(shards.sum(dim=1, dtype=load_pass.dtype))
            shards.zero_()


def fold_shards_first(self, log_stats: bool):
    # Everything below reads expert_load_pass: the forwards since the last step
    # counted into the shards. They recorded only if the flag they read was set,
    # and that flag is the rule's value for this step (published at the end of
    # the last one), so the fold costs nothing on the steps outside the window.
    if self._should_record_current_step(log_stats=log_stats):
        for eplb_model_state in self.model_states.values():
            self._fold_expert_load(eplb_model_state)
