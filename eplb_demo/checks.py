# SPDX-License-Identifier: Apache-2.0
"""What the demo expects, stated independently of vLLM's code, and the report
that collects its output and failed checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from eplb_demo.model import NUM_GPUS, NUM_LAYERS, SLOTS_PER_GPU
from eplb_fork.progress import Meter

# Tolerated drop in balancedness when the window's load is already balanced by
# the previous placement: the policy is greedy, not optimal.
BALANCE_SLACK = 0.02


class GateRule:
    """When vLLM should record, stated from its purpose: a rearrangement reads
    the last `window` recorded steps, so exactly the steps at most `window`
    away from it record (balancedness logging is off). The counter starts
    three quarters into the interval and rearranges when it reaches it."""

    def __init__(self, window: int, interval: int) -> None:
        self.window = window
        self.interval = interval
        self.counter = interval - interval // 4

    def records(self) -> bool:
        return self.interval - self.counter <= self.window

    def advance(self) -> bool:
        """Count one step; True when it ends with a rearrangement."""
        self.counter += 1
        if self.counter < self.interval:
            return False
        self.counter = 0
        return True


def per_gpu(physical_load: torch.Tensor) -> torch.Tensor:
    """(layers, physical) -> (layers, gpus): vLLM places physical expert p on
    GPU p // slots_per_gpu."""
    return physical_load.reshape(NUM_LAYERS, NUM_GPUS, SLOTS_PER_GPU).sum(dim=-1)


def balancedness(per_gpu_load: torch.Tensor) -> float:
    """vLLM's balancedness log line: mean over GPUs over max over GPUs, both
    summed over layers."""
    load = per_gpu_load.double()
    top = load.max(dim=-1).values.sum()
    return float(load.mean(dim=-1).sum() / top) if top > 0 else 0.0


def layer_balancedness(per_gpu_load: torch.Tensor) -> list[float]:
    load = per_gpu_load.double()
    return (load.mean(dim=-1) / load.max(dim=-1).values.clamp(min=1)).tolist()


@dataclass
class Report:
    """The demo's output lines (printed above the progress meter while the
    steps run) and its failed checks."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    meter: Meter | None = None

    def say(self, line: str = "") -> None:
        self.lines.append(line)
        self._print(line)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)
            self._print(f"CHECK FAILED: {what}")

    def _print(self, line: str) -> None:
        if self.meter:
            self.meter.write(line)
        else:
            print(line, flush=True)
