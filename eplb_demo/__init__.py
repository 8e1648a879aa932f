# SPDX-License-Identifier: Apache-2.0
"""EPLB on a CPU, end to end, through the installed fork's own code.

    TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES= .venv/bin/python -m eplb_demo [--short]

It runs in the fork's venv (`make demo`, `make demo-smoke`), not the engine's.

A small fake MoE model (4 layers, 16 logical experts + 4 redundant ones on 4
simulated GPUs, top-4) serves a few hundred steps of skewed synthetic routing:
Zipf-like expert popularity, a different hot set per layer, and a drift of the
popularity halfway through. What runs is vLLM's, imported from the fork:

- `EplbState` built from a real `ParallelConfig`/`EPLBConfig`, `add_model`, and
  its real `step()` after every forward: the recording gate (the shared
  `should_record_tensor`), the load window, the rearrangement counter;
- the router's fused Triton map+record kernel `eplb_map_and_record_triton`,
  called for every layer with that layer's `EplbLayerState` tensors, under
  Triton's interpreter on CPU tensors;
- at each rearrangement, vLLM's default policy (`DefaultEplbPolicy`, the one
  `add_model` selects from the config) on the window's per-logical-expert load.

Stand-ins (`model.py`), as there is neither a process group, nor expert
weights, nor a checkpoint here: the EP group (one process plays all four
simulated GPUs, so the collectives would be identities), the model's sizes
and weights (its `set_eplb_state` is vLLM's own), the `ModelConfig` (add_model
reads a name and a hash), and `rearrange()`'s weight transfer, which a
subclass replaces by installing the policy's placement into the state's maps
in place, as vLLM commits them after moving the weights.

The demo checks what it shows, from its own bookkeeping (`checks.py`): the
flag follows the gate rule at every step; the kernel's ids map through the
current placement; it counts exactly the real tokens (not the padding rows),
and only on recorded steps; the window vLLM hands the policy equals an
independent count (`torch.bincount`) of the demo's routing on the recorded
steps; rebalancing improves the balancedness over the initial placement and
after the drift, and does not make it worse elsewhere. Any failed check exits
non-zero.
"""
