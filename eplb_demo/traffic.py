# SPDX-License-Identifier: Apache-2.0
"""The synthetic traffic: batch sizes, padding, and Zipf-skewed routing."""

from __future__ import annotations

import torch

from eplb_demo.model import NUM_LAYERS, NUM_LOGICAL, TOP_K

TOKENS_PER_STEP = (192, 320)
# Batches are padded to a multiple of this, as CUDA-graph sizes pad them; the
# padding rows route like any other row but must never count as load.
PAD_TO = 64
ZIPF_EXPONENT = 1.2


class SkewedRouting:
    """Top-k logical expert choices with Zipf-like popularity: the expert of
    popularity rank r is picked with weight 1 / (r + 1) ** s, each layer with
    its own ranking; `drift()` draws new rankings."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        ranks = torch.arange(NUM_LOGICAL, dtype=torch.float64)
        self.zipf = 1.0 / (ranks + 1.0) ** ZIPF_EXPONENT
        self.popularity = torch.empty(NUM_LAYERS, NUM_LOGICAL, dtype=torch.float64)
        self.drift()

    def drift(self) -> None:
        for layer in range(NUM_LAYERS):
            order = torch.randperm(NUM_LOGICAL, generator=self.generator)
            self.popularity[layer, order] = self.zipf

    def route(self, layer: int, tokens: int) -> torch.Tensor:
        weights = self.popularity[layer].expand(tokens, -1)
        chosen = torch.multinomial(weights, TOP_K, replacement=False, generator=self.generator)
        return chosen.to(torch.int32)
