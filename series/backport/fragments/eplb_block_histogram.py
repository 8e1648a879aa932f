"""Fragment: per-tile load counting in the map+record kernel.

The patch `eplb_block_histogram` puts this code into
vllm/model_executor/layers/fused_moe/router/base_router.py, each piece where
the patch says. The imports are those base_router.py has.
"""

from vllm.triton_utils import tl, triton

# Above this many physical experts (plus a spill bin) the kernel counts with
# one atomic per id instead of a per-tile histogram.
MAX_HISTOGRAM_BINS = 4096


def count_per_tile(
    HISTOGRAM_BINS, record, counted, physical, expert_load_ptr, num_physical
):
    """Encloses the kernel's per-id atomic add, which stays as the `...`."""
    if HISTOGRAM_BINS > 0:
        if record:
            # Count the tile's ids per expert (a histogram in shared memory),
            # then one atomic per non-empty expert. Ids not counted go to the
            # last bin, which lies past every expert.
            bins = tl.where(counted, physical, HISTOGRAM_BINS - 1).to(tl.int32)
            per_expert = tl.histogram(bins, HISTOGRAM_BINS)
            experts = tl.arange(0, HISTOGRAM_BINS)
            tl.atomic_add(
                expert_load_ptr + experts,
                per_expert,
                mask=(per_expert > 0) & (experts < num_physical),
            )
    else:
        ...


def size_tiles(numel, expert_load_view):
    # Enough programs to fill the GPU (an H200 has 132 SMs) for the mapping, and
    # at prefill sizes tiles large enough for the histogram to fold many ids into
    # one atomic per expert; below 512 ids a tile gains nothing from it.
    min_block = 512 if numel >= 32768 else 256
    per_program = triton.next_power_of_2(triton.cdiv(numel, 132))
    block_size = min(2048, max(min_block, per_program))
    bins = triton.next_power_of_2(expert_load_view.shape[0] + 1)
    use_histogram = block_size >= 512 and bins <= MAX_HISTOGRAM_BINS
    return block_size, bins, use_histogram
