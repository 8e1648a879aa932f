# SPDX-License-Identifier: Apache-2.0
"""The demo's figure (matplotlib, from requirements/demo.txt)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from eplb_demo.checks import balancedness, layer_balancedness
from eplb_demo.model import NUM_GPUS, NUM_LAYERS

if TYPE_CHECKING:
    from eplb_demo.run import Demo


def plot(demo: Demo, path: Path) -> None:
    """Top: the recording flag per step. Below, one column per rearrangement
    and one row per layer: tokens per GPU in the window, before and after."""
    try:
        import matplotlib
    except ImportError:
        sys.exit("matplotlib is missing: .venv/bin/pip install -r requirements/demo.txt")
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    config, flags, events = demo.config, demo.flags, demo.state.rearrangements
    columns = max(1, len(events))
    figure = plt.figure(figsize=(3.2 * columns + 1, 2.4 + 1.6 * NUM_LAYERS), layout="constrained")
    grid = figure.add_gridspec(NUM_LAYERS + 1, columns, height_ratios=[1.2] + [1] * NUM_LAYERS)
    top = figure.add_subplot(grid[0, :])
    top.fill_between(range(len(flags)), flags, step="post", alpha=0.6, label="recording")
    for number, event in enumerate(events):
        # step() rearranges after the forward of `event.step`.
        label = "rearrangement" if number == 0 else None
        top.axvline(event.step + 1, color="C3", ls="--", label=label)
    top.axvline(config.drift_step, color="C2", ls=":", label="popularity drift")
    top.set_yticks([0, 1], ["off", "on"])
    top.set_xlim(0, len(flags))
    top.set_xlabel("step")
    top.set_title(
        f"should_record_tensor per step (window_size {config.window_size}, "
        f"step_interval {config.step_interval})"
    )
    top.legend(loc="upper left", fontsize="small", ncols=3)

    gpus = torch.arange(NUM_GPUS).float()
    bars = []
    for column, event in enumerate(events):
        for layer in range(NUM_LAYERS):
            axis = figure.add_subplot(grid[layer + 1, column])
            bars = [
                axis.bar(gpus - 0.2, event.per_gpu_before[layer], 0.4, color="0.6"),
                axis.bar(gpus + 0.2, event.per_gpu_after[layer], 0.4, color="C0"),
            ]
            axis.set_xticks(range(NUM_GPUS), [f"GPU{g}" for g in range(NUM_GPUS)])
            before = layer_balancedness(event.per_gpu_before)[layer]
            after = layer_balancedness(event.per_gpu_after)[layer]
            title = f"layer {layer}: {before:.2f} -> {after:.2f}"
            if layer == 0:
                overall = (
                    f"{balancedness(event.per_gpu_before):.2f} -> "
                    f"{balancedness(event.per_gpu_after):.2f}"
                )
                title = f"after step {event.step}, balancedness {overall}\n{title}"
            axis.set_title(title, fontsize="small")
            if column == 0:
                axis.set_ylabel("window tokens")
    if bars:
        figure.legend(
            bars,
            ["before rebalancing (as recorded)", "after (same tokens, new placement)"],
            loc="outside lower center",
            ncols=2,
        )
    figure.suptitle("EPLB on CPU: vLLM's recording gate, map+record kernel and default policy")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
