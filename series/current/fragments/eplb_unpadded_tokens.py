"""Fragment: per-micro-batch counts of real tokens, for the releases of the
current line before upstream's own (0.20-0.24): the code patch
`eplb_unpadded_tokens` puts into vllm/distributed/eplb/eplb_state.py, the
router (vllm/model_executor/layers/fused_moe/router/base_router.py) and
both GPU model runners. The imports stand for those files' own (the patch
adds the router's and the EPLB controller's).
"""

import torch

from vllm.config import ModelConfig
from vllm.model_executor.layers.fused_moe.router.base_router import (
    _eplb_map_and_record_i32_kernel,
)
from vllm.model_executor.models.interfaces import MixtureOfExperts
from vllm.triton_utils import tl, triton
from vllm.v1.worker.ubatching import dbo_current_ubatch_id

# The count a model's tensors hold until its runner publishes one: more rows
# than any batch has, so a forward nobody prepared (a drafter's) counts every
# row, as it did before.
ALL_ROWS_ARE_REAL = 2**31 - 1


class EplbLayerState:
    num_unpadded_tokens_tensors: list[torch.Tensor] | None = None
    """
    The model's real-token counts, one 0-dim int32 device tensor per
    micro-batch, shared with every layer of the model (the router picks its
    micro-batch's): rows past the count are padding and are not recorded.
    """


class EplbModelState:
    num_unpadded_tokens_tensors: list[torch.Tensor] | None = None
    """
    This model's real-token counts per micro-batch, filled by
    :meth:`EplbState.prepare_forward` before each forward; allocated once in
    :meth:`EplbState.add_model`, so captured CUDA graphs read the current
    values.
    """


def declare_counts_by_config(self):
    self.unpadded_counts_by_config: dict[int, list[torch.Tensor]] = {}
    """
    Each model's real-token counts by the id of its config object, which
    lives as long as the model runner: what `prepare_forward` finds every
    step without hashing the config.
    """


def allocate_unpadded_counts(self, model_config):
    # One count per micro-batch (num_ubatches is 0 without DBO).
    num_unpadded_tokens_tensors = [
        torch.tensor(ALL_ROWS_ARE_REAL, dtype=torch.int32, device=self.device)
        for _ in range(max(1, self.parallel_config.num_ubatches))
    ]
    self.unpadded_counts_by_config[id(model_config)] = num_unpadded_tokens_tensors
    return num_unpadded_tokens_tensors


class EplbState:
    def _propagate_shared_tensors(
        self,
        model: MixtureOfExperts,
        num_unpadded_tokens_tensors: list[torch.Tensor],
    ) -> None:
        """Hand every MoE layer of `model` the tensors its router reads and
        EplbState writes: the record flag (allocated on the first call, one
        for every model) and the model's real-token counts. Called after
        `model.set_eplb_state`, which gives each layer its state."""
        layer_states = [
            layer.eplb_state
            for layer in model.moe_layers
            if isinstance(getattr(layer, "eplb_state", None), EplbLayerState)
        ]
        if self.should_record_tensor is None and layer_states:
            self.should_record_tensor = torch.ones(
                (), dtype=torch.bool, device=self.device
            )
        for layer_state in layer_states:
            layer_state.should_record_tensor = self.should_record_tensor
            layer_state.num_unpadded_tokens_tensors = num_unpadded_tokens_tensors

    def prepare_forward(
        self,
        model_config: ModelConfig,
        num_unpadded_tokens: int,
        ubatch_slices: list | None = None,
    ) -> None:
        """Publish how many of the coming forward's rows are real tokens: the
        whole batch's count, or with micro-batches (DBO) each micro-batch's
        share of it. A model that EPLB does not balance is left alone."""
        counts = self.unpadded_counts_by_config.get(id(model_config))
        if counts is None:
            return
        if ubatch_slices is None:
            counts[0].fill_(num_unpadded_tokens)
            return
        for count, ubatch_slice in zip(counts, ubatch_slices):
            rows = ubatch_slice.token_slice
            count.fill_(max(0, min(num_unpadded_tokens, rows.stop) - rows.start))


def skip_padded_rows(
    offs, num_active_experts, num_unpadded_tokens_ptr, HAS_NUM_UNPADDED
):
    # Rows past the real tokens are padding (a CUDA-graph size, DP padding):
    # mapped like the others, never counted. Read on the device, so every
    # replay of a captured graph counts its own batch.
    if HAS_NUM_UNPADDED:
        row = offs // num_active_experts
        is_unpadded = row < tl.load(num_unpadded_tokens_ptr)
    else:
        is_unpadded = True
    return is_unpadded


def record_unpadded_only(mask, record_enabled, is_unpadded, physical_id, out_size):
    valid = (
        mask
        & record_enabled
        & is_unpadded
        & (physical_id >= 0)
        & (physical_id < out_size)
    )
    return valid


def _eplb_map_and_record_triton(
    topk_ids: torch.Tensor,
    logical_to_physical_map: torch.Tensor,
    logical_replica_count: torch.Tensor,
    expert_load_view: torch.Tensor,
    record_enabled: torch.Tensor,
    num_unpadded_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    topk_ids_in = topk_ids.contiguous().to(dtype=torch.int32)
    numel = topk_ids_in.numel()
    if numel == 0:
        return topk_ids
    # The load view is written in place: a copy would lose the counts.
    assert expert_load_view.is_contiguous()
    out_flat = torch.empty((numel,), device=topk_ids.device, dtype=topk_ids.dtype)
    _eplb_map_and_record_i32_kernel[(triton.cdiv(numel, 256),)](
        topk_ids_in,
        logical_replica_count.contiguous(),
        logical_to_physical_map.contiguous(),
        out_flat,
        expert_load_view,
        record_enabled,
        num_unpadded_tokens,
        logical_replica_count.shape[0],
        logical_to_physical_map.shape[1],
        expert_load_view.shape[0],
        numel,
        topk_ids_in.shape[-1],
        HAS_NUM_UNPADDED=num_unpadded_tokens is not None,
        BLOCK_SIZE=256,
    )
    return out_flat.reshape(topk_ids.shape)


def _unpadded_tokens_of(eplb_state: EplbLayerState) -> torch.Tensor | None:
    """The real-token count of the micro-batch being routed (DBO runs
    several per forward)."""
    counts = eplb_state.num_unpadded_tokens_tensors
    return None if counts is None else counts[dbo_current_ubatch_id()]


def require_unpadded_counts(self):
    if self.eplb_state.num_unpadded_tokens_tensors is None:
        raise ValueError("EPLB requires num_unpadded_tokens_tensors != None")


class EPLBController:
    def prepare_forward(
        self,
        model_config: ModelConfig,
        num_unpadded_tokens: int,
        ubatch_slices: list | None = None,
    ) -> None:
        if self.state is None or not self.parallel_config.enable_eplb:
            return
        self.state.prepare_forward(model_config, num_unpadded_tokens, ubatch_slices)


def hand_out_after_resize(eplb_state, model, eplb_model_state):
    eplb_state._propagate_shared_tensors(
        model, eplb_model_state.num_unpadded_tokens_tensors
    )


def publish_real_tokens(self, num_tokens_unpadded, ubatch_slices_padded):
    # The router records only these rows of the padded batch as load.
    if self.eplb_state is not None:
        self.eplb_state.prepare_forward(
            self.model_config, num_tokens_unpadded, ubatch_slices_padded
        )


def no_real_tokens_in_dummy_batch(self, ubatch_slices_padded):
    # A dummy batch (a capture or its warm-up, an idle DP rank) has no
    # real tokens. Start-up's skip EplbState.step, which drops a dummy
    # batch's load: what they counted would reach the first window slot.
    if self.eplb_state is not None:
        self.eplb_state.prepare_forward(
            self.model_config, 0, ubatch_slices_padded
        )


def publish_real_tokens_of_the_batch(self, input_batch):
    # The router records only these rows of the padded batch as load.
    self.eplb.prepare_forward(self.model_config, input_batch.num_tokens)
