# SPDX-License-Identifier: Apache-2.0
"""What the demo prints: each rearrangement as it happens, then the summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from eplb_demo.checks import BALANCE_SLACK, Report, balancedness, layer_balancedness
from eplb_demo.model import NUM_GPUS, NUM_LAYERS, SLOTS_PER_GPU, TOP_K, Rearrangement

if TYPE_CHECKING:
    from eplb_demo.run import Demo


def step_ranges(steps: list[int]) -> str:
    """[15, 16, 17, 30] -> '15-17, 30'."""
    runs: list[list[int]] = []
    for step in steps:
        if runs and step == runs[-1][1] + 1:
            runs[-1][1] = step
        else:
            runs.append([step, step])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"


def describe_rearrangement(
    report: Report, event: Rearrangement, number: int, window_steps: list[int]
) -> None:
    tokens = int(event.window.sum()) // (NUM_LAYERS * TOP_K)
    report.say(
        f"== rearrangement {number} after step {event.step}: window of steps "
        f"{step_ranges(window_steps)} ({tokens} tokens x top-{TOP_K})"
    )
    report.say("   window load per logical expert (what the policy balances):")
    for layer, row in enumerate(event.logical_load.tolist()):
        report.say(f"     layer {layer}: " + " ".join(f"{v:4d}" for v in row))
    report.say("   new placement, logical expert per slot (GPU0 | GPU1 | ...):")
    for layer, row in enumerate(event.new_placement.tolist()):
        gpus = [row[g * SLOTS_PER_GPU : (g + 1) * SLOTS_PER_GPU] for g in range(NUM_GPUS)]
        slots = " | ".join(" ".join(f"{e:2d}" for e in gpu) for gpu in gpus)
        report.say(f"     layer {layer}: {slots}")
    before, after = balancedness(event.per_gpu_before), balancedness(event.per_gpu_after)
    report.say(f"   balancedness (mean/max tokens per GPU): {before:.3f} -> {after:.3f}")
    for name, load in (("before", event.per_gpu_before), ("after", event.per_gpu_after)):
        per_layer = " ".join(f"{b:.3f}" for b in layer_balancedness(load))
        report.say(
            f"     {name:6s} per layer {per_layer}; "
            f"tokens per GPU, all layers {load.sum(dim=0).tolist()}"
        )


def summarize(demo: Demo, png: Path) -> None:
    config, report, events = demo.config, demo.report, demo.state.rearrangements
    recorded = [step for step, flag in enumerate(demo.flags) if flag]
    report.check(len(events) >= 1, "at least one rearrangement")
    report.say()
    report.say("== summary")
    report.say(
        f"recorded steps {step_ranges(recorded)} ({len(recorded)} of {len(demo.flags)}; "
        f"the gate rule: the {config.window_size} steps before each rearrangement)"
    )
    report.say("rearrangements after steps " + (", ".join(str(e.step) for e in events) or "none"))
    report.say("  after step  balancedness before -> after  (mean/max tokens per GPU)")
    for event in events:
        stale = demo.stale_placement(event)
        note = f"  ({stale})" if stale else ""
        report.say(
            f"  {event.step:10d}  {balancedness(event.per_gpu_before):.3f} -> "
            f"{balancedness(event.per_gpu_after):.3f}{note}"
        )
    report.say(f"plot: {png}")
    if report.failures:
        report.say(f"FAILED: {len(report.failures)} failed checks; first: {report.failures[0]}")
        return
    report.say(
        "checks passed: the flag follows the gate rule at every step; ids map through "
        "the current placement; the kernel counts real tokens, only when recording; "
        "each window equals the demo's own count and its logical load the routed one; "
        "balancedness improves over the initial placement and the one from before the "
        f"drift, and drops by at most {BALANCE_SLACK} elsewhere"
    )
