# SPDX-License-Identifier: Apache-2.0
"""EPLB on a CPU, end to end, through the installed fork's own code.

    TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES= .venv/bin/python -m eplb_fork.demo [--short]

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

Stand-ins, as there is neither a process group, nor expert weights, nor a
checkpoint here: the EP group (one process plays all four simulated GPUs, so
the collectives would be identities; see `single_process_ep_group`), the
`ModelConfig` (add_model reads a name and a hash), and `rearrange()`'s weight
transfer, which a subclass replaces by installing the policy's placement into
the state's maps in place, as vLLM commits them after moving the weights.

The demo checks what it shows, from its own bookkeeping: the flag follows the
gate rule at every step; the kernel's ids map through the current placement;
it counts exactly the real tokens (not the padding rows), and only on recorded
steps; the window vLLM hands the policy equals an independent count
(`torch.bincount`) of the demo's routing on the recorded steps; rebalancing
improves the balancedness over the initial placement and after the drift, and
does not make it worse elsewhere. Any failed check exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
import vllm.distributed.parallel_state as parallel_state
from tqdm import tqdm
from vllm.config.parallel import EPLBConfig, ParallelConfig
from vllm.distributed.eplb.eplb_state import EplbLayerState, EplbModelState, EplbState
from vllm.distributed.eplb.policy import DefaultEplbPolicy
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)
from vllm.triton_utils import HAS_TRITON

from eplb_fork import REPO_ROOT

NUM_LAYERS = 4
NUM_LOGICAL = 16
NUM_REDUNDANT = 4
NUM_PHYSICAL = NUM_LOGICAL + NUM_REDUNDANT
NUM_GPUS = 4
SLOTS_PER_GPU = NUM_PHYSICAL // NUM_GPUS
TOP_K = 4
TOKENS_PER_STEP = (192, 320)
# Batches are padded to a multiple of this, as CUDA-graph sizes pad them; the
# padding rows route like any other row but must never count as load.
PAD_TO = 64
ZIPF_EXPONENT = 1.2
# Tolerated drop in balancedness when the window's load is already balanced by
# the previous placement: the policy is greedy, not optimal.
BALANCE_SLACK = 0.02


@dataclass
class DemoConfig:
    steps: int
    window_size: int
    step_interval: int
    seed: int
    out_dir: Path

    @property
    def drift_step(self) -> int:
        return self.steps // 2


def parse_args(argv: list[str] | None) -> DemoConfig:
    parser = argparse.ArgumentParser(
        prog="python -m eplb_fork.demo",
        description="EPLB recording gate, map+record kernel and rebalancing on CPU.",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="CI mode: 60 steps, window 5, interval 24 (three rearrangements)",
    )
    parser.add_argument("--steps", type=int, help="forward steps (default 400)")
    parser.add_argument("--window-size", type=int, help="EPLBConfig.window_size (default 10)")
    parser.add_argument("--step-interval", type=int, help="EPLBConfig.step_interval (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "build" / "demo")
    args = parser.parse_args(argv)
    steps, window, interval = (60, 5, 24) if args.short else (400, 10, 100)
    return DemoConfig(
        steps=args.steps or steps,
        window_size=args.window_size or window,
        step_interval=args.step_interval or interval,
        seed=args.seed,
        out_dir=args.out_dir,
    )


# --- The model side: just the MixtureOfExperts surface add_model touches ------


class DemoMoELayer:
    def __init__(self) -> None:
        self.eplb_state = EplbLayerState()


class DemoMoEModel:
    num_moe_layers = NUM_LAYERS
    num_expert_groups = 1
    num_logical_experts = NUM_LOGICAL
    num_routed_experts = NUM_LOGICAL
    num_redundant_experts = NUM_REDUNDANT
    num_physical_experts = NUM_PHYSICAL
    # One process holds every simulated GPU's experts.
    num_local_physical_experts = NUM_PHYSICAL
    num_shared_experts = 0

    def __init__(self) -> None:
        self.moe_layers = [DemoMoELayer() for _ in range(NUM_LAYERS)]
        # add_model sizes its transfer buffer from these; no weights move here.
        self.expert_weights = [[torch.zeros(NUM_PHYSICAL, 1)] for _ in range(NUM_LAYERS)]

    def set_eplb_state(
        self,
        expert_load_view: torch.Tensor,
        logical_to_physical_map: torch.Tensor,
        logical_replica_count: torch.Tensor,
    ) -> None:
        # Views, as vLLM's MoE layers keep them: updates to the state's maps
        # reach the router without another call.
        for index, layer in enumerate(self.moe_layers):
            layer.eplb_state.expert_load_view = expert_load_view[index]
            layer.eplb_state.logical_to_physical_map = logical_to_physical_map[index]
            layer.eplb_state.logical_replica_count = logical_replica_count[index]


@contextlib.contextmanager
def single_process_ep_group() -> Iterator[None]:
    """vLLM's EP group, as one rank of size one, for the duration of the demo.

    `EplbState.step()` looks the group up through `get_ep_group()`; with
    balancedness logging off and `rearrange()` overridden it needs nothing but
    its size and rank. A CPU demo has no torch.distributed to build a real
    group from, so the global that `initialize_model_parallel` would set is set
    here explicitly, and restored on the way out.
    """
    group = SimpleNamespace(size=lambda: 1, rank=lambda: 0)
    previous = parallel_state._EP
    parallel_state._EP = SimpleNamespace(device_group=group)
    try:
        yield
    finally:
        parallel_state._EP = previous


# --- EplbState with the weight transfer replaced by installing the maps -------


@dataclass
class Rearrangement:
    step: int  # the forward after which step() rearranged
    window: torch.Tensor  # (window_size, layers, physical): what vLLM recorded
    logical_load: torch.Tensor  # (layers, logical): what the policy balanced
    new_placement: torch.Tensor  # (layers, physical) -> logical
    per_gpu_before: torch.Tensor = field(init=False)  # (layers, gpus)
    per_gpu_after: torch.Tensor = field(init=False)


class PolicyOnlyEplbState(EplbState):
    """`EplbState` whose `rearrange()` runs the configured policy and installs
    its placement, without the weight transfer (which needs the EP process
    group and the experts' weights)."""

    def __init__(self, parallel_config: ParallelConfig) -> None:
        super().__init__(parallel_config, torch.device("cpu"))
        self.rearrangements: list[Rearrangement] = []
        self.current_step = -1  # set by the driver before each step()

    def rearrange(
        self, is_profile: bool = False, rank_mapping: dict[int, int] | None = None
    ) -> None:
        if is_profile:
            return None
        for model_state in self.model_states.values():
            window = model_state.expert_load_window.clone()
            placement = model_state.physical_to_logical_map
            # Each physical expert's window load, credited to the logical
            # expert it holds now, as vLLM's rearrange() does.
            logical_load = torch.zeros(NUM_LAYERS, NUM_LOGICAL, dtype=torch.long)
            logical_load.scatter_add_(1, placement.long(), window.sum(dim=0).long())
            new_placement = self.policy.rebalance_experts(
                logical_load,
                num_replicas=NUM_PHYSICAL,
                num_groups=model_state.model.num_expert_groups,
                num_nodes=1,
                num_ranks=NUM_GPUS,
                old_global_expert_indices=placement.clone(),
            )
            self.rearrangements.append(
                Rearrangement(
                    step=self.current_step,
                    window=window,
                    logical_load=logical_load,
                    new_placement=new_placement.clone(),
                )
            )
            install_placement(model_state, new_placement)
        return None


def install_placement(model_state: EplbModelState, physical_to_logical: torch.Tensor) -> None:
    """Make `physical_to_logical` (layers, physical) the state's placement.

    In place, as vLLM commits its maps after a rearrangement: every MoE layer
    holds views of these tensors. A logical expert's replicas are listed in
    ascending physical order, the order vLLM derives them in.
    """
    logical_to_physical = torch.full_like(model_state.logical_to_physical_map, -1)
    replica_count = torch.zeros_like(model_state.logical_replica_count)
    for layer, row in enumerate(physical_to_logical.tolist()):
        for physical, logical in enumerate(row):
            logical_to_physical[layer, logical, replica_count[layer, logical]] = physical
            replica_count[layer, logical] += 1
    model_state.physical_to_logical_map.copy_(physical_to_logical)
    model_state.logical_to_physical_map.copy_(logical_to_physical)
    model_state.logical_replica_count.copy_(replica_count)


# --- Independent expectations ---------------------------------------------------


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


def step_ranges(steps: list[int]) -> str:
    """[15, 16, 17, 30] -> '15-17, 30'."""
    runs: list[list[int]] = []
    for step in steps:
        if runs and step == runs[-1][1] + 1:
            runs[-1][1] = step
        else:
            runs.append([step, step])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"


# --- The run ------------------------------------------------------------------


@dataclass
class RecordedStep:
    step: int
    physical_load: torch.Tensor  # (layers, physical): the demo's own count
    logical_load: torch.Tensor  # (layers, logical): the same tokens, by logical id
    routed: list[torch.Tensor]  # per layer: logical ids, padding rows included
    real_tokens: int


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def say(self, line: str = "") -> None:
        self.lines.append(line)
        tqdm.write(line)  # above the bar, on a terminal
        sys.stdout.flush()  # in order with the progress lines, in a log

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)
            tqdm.write(f"CHECK FAILED: {what}")


def progress(steps: int) -> Iterator[int]:
    """tqdm's bar on a terminal; in a log (CI), a plain line every 10%."""
    if sys.stderr.isatty():
        yield from tqdm(range(steps), desc="steps", unit="step", file=sys.stderr)
        return
    every = max(1, steps // 10)
    for step in range(steps):
        if step % every == 0:
            print(f"steps: {step}/{steps}", file=sys.stderr, flush=True)
        yield step
    print(f"steps: {steps}/{steps}", file=sys.stderr, flush=True)


def map_and_record(layer_state: EplbLayerState, routed: torch.Tensor) -> torch.Tensor:
    """The router's EPLB call, with the layer's state as `BaseRouter` passes
    it. (`eplb_map_to_physical_and_record` passes ids through off CUDA
    platforms, so the Triton function is called by its own name.)"""
    return eplb_map_and_record_triton(
        topk_ids=routed,
        expert_load_view=layer_state.expert_load_view,
        logical_to_physical_map=layer_state.logical_to_physical_map,
        logical_replica_count=layer_state.logical_replica_count,
        record_enabled=layer_state.should_record_tensor,
        real_token_count=layer_state.real_token_count,
    )


class Demo:
    """Drives the model's forwards and vLLM's `step()`, and checks each step
    against its own bookkeeping."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.report = Report()
        # The redundant experts come from the model (add_model reads them
        # there): the config's own count is only accepted with enable_eplb,
        # which ParallelConfig refuses off CUDA.
        eplb_config = EPLBConfig(window_size=config.window_size, step_interval=config.step_interval)
        self.state = PolicyOnlyEplbState(ParallelConfig(eplb_config=eplb_config))
        self.model = DemoMoEModel()
        # A real ModelConfig would fetch a checkpoint's config; add_model reads
        # just these two things from it.
        model_config = SimpleNamespace(model="demo-moe", compute_hash=lambda: "demo-moe")
        self.state.add_model(self.model, model_config)
        self.model_state = next(iter(self.state.model_states.values()))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.routing = SkewedRouting(self.generator)
        self.rule = GateRule(config.window_size, config.step_interval)
        self.flags: list[bool] = []
        # The last `window_size` recorded steps: what vLLM's window must hold.
        self.window: deque[RecordedStep] = deque(maxlen=config.window_size)

    def run(self) -> None:
        config, report = self.config, self.report
        report.say(
            f"EPLB demo: {NUM_LAYERS} MoE layers, {NUM_LOGICAL} logical + {NUM_REDUNDANT} "
            f"redundant experts on {NUM_GPUS} simulated GPUs ({SLOTS_PER_GPU} slots each), "
            f"top-{TOP_K}, {TOKENS_PER_STEP[0]}-{TOKENS_PER_STEP[1]} tokens a step padded "
            f"to a multiple of {PAD_TO}, Zipf exponent {ZIPF_EXPONENT}"
        )
        report.say(
            f"EPLBConfig(window_size={config.window_size}, "
            f"step_interval={config.step_interval}); counter starts at {self.rule.counter}; "
            f"{config.steps} steps, popularity drifts before step {config.drift_step}; "
            f"seed {config.seed}"
        )
        report.check(self.state.policy is DefaultEplbPolicy, "add_model selected the policy")
        report.check(
            all(
                layer.eplb_state.should_record_tensor is self.state.should_record_tensor
                for layer in self.model.moe_layers
            ),
            "every layer holds the state's one recording flag",
        )
        for step in progress(config.steps):
            if step == config.drift_step:
                self.routing.drift()
            self.forward(step)
            self.state.current_step = step
            seen = len(self.state.rearrangements)
            self.state.step()
            rearranged = len(self.state.rearrangements) > seen
            report.check(rearranged == self.rule.advance(), f"step {step}: rearrangement as due")
            if rearranged:
                self.after_rearrangement(self.state.rearrangements[-1])

    def forward(self, step: int) -> None:
        """One forward's routing through every layer's map+record."""
        flag = bool(self.state.should_record_tensor)
        self.flags.append(flag)
        self.report.check(
            flag == self.rule.records(),
            f"step {step}: flag {flag}, the rule says {self.rule.records()}",
        )
        real_tokens = int(torch.randint(*TOKENS_PER_STEP, (), generator=self.generator))
        padded = math.ceil(real_tokens / PAD_TO) * PAD_TO
        self.state.set_real_token_count(real_tokens)
        # Padding rows all route alike (equal hidden states, equal logits), so
        # counting them would pile load on a few experts.
        padding = torch.arange(TOP_K, dtype=torch.int32).expand(padded - real_tokens, -1)
        physical_load = torch.zeros(NUM_LAYERS, NUM_PHYSICAL, dtype=torch.long)
        logical_load = torch.zeros(NUM_LAYERS, NUM_LOGICAL, dtype=torch.long)
        routed_layers = []
        for index, layer in enumerate(self.model.moe_layers):
            routed = torch.cat([self.routing.route(index, real_tokens), padding])
            physical = map_and_record(layer.eplb_state, routed)
            placement = self.model_state.physical_to_logical_map[index]
            self.report.check(
                bool((physical >= 0).all())
                and torch.equal(placement[physical.long()], routed.long()),
                f"step {step} layer {index}: ids map through the current placement",
            )
            if flag:
                physical_load[index] = torch.bincount(
                    physical[:real_tokens].flatten().long(), minlength=NUM_PHYSICAL
                )
                logical_load[index] = torch.bincount(
                    routed[:real_tokens].flatten().long(), minlength=NUM_LOGICAL
                )
            routed_layers.append(routed)
        self.report.check(
            torch.equal(self.model_state.expert_load_pass.long(), physical_load),
            f"step {step}: the kernel counted the real tokens iff the flag was set",
        )
        if flag:
            self.window.append(
                RecordedStep(step, physical_load, logical_load, routed_layers, real_tokens)
            )

    def after_rearrangement(self, event: Rearrangement) -> None:
        config, report = self.config, self.report
        window = list(self.window)
        report.check(
            torch.equal(event.window.sum(dim=0).long(), sum(r.physical_load for r in window)),
            f"after step {event.step}: vLLM's window equals the demo's own count",
        )
        if config.window_size <= config.step_interval:
            # Then every window step ran on the placement being replaced, and
            # crediting physical load to logical experts through it is exact.
            report.check(
                torch.equal(event.logical_load, sum(r.logical_load for r in window)),
                f"after step {event.step}: the policy got the routed logical load",
            )
        event.per_gpu_before = per_gpu(event.window.sum(dim=0).long())
        event.per_gpu_after = replay_per_gpu(self.model, window)
        number = len(self.state.rearrangements)
        describe_rearrangement(report, event, number, [r.step for r in window])
        before, after = balancedness(event.per_gpu_before), balancedness(event.per_gpu_after)
        stale = self.stale_placement(event)
        if stale:
            report.check(
                after > before,
                f"after step {event.step}: rebalancing the {stale} improves the "
                f"balancedness, {before:.3f} -> {after:.3f}",
            )
        else:
            report.check(
                after >= before - BALANCE_SLACK,
                f"after step {event.step}: balancedness {before:.3f} -> {after:.3f}",
            )

    def stale_placement(self, event: Rearrangement) -> str | None:
        """Why the placement being replaced was not made for this traffic, if
        it was not: it is the initial one, or the popularity drifted since."""
        events = self.state.rearrangements
        if event is events[0]:
            return "initial placement"
        previous = events[events.index(event) - 1]
        if previous.step < self.config.drift_step <= event.step:
            return "placement from before the drift"
        return None

    def summarize(self, png: Path) -> None:
        config, report, events = self.config, self.report, self.state.rearrangements
        recorded = [step for step, flag in enumerate(self.flags) if flag]
        report.check(len(events) >= 1, "at least one rearrangement")
        report.say()
        report.say("== summary")
        report.say(
            f"recorded steps {step_ranges(recorded)} ({len(recorded)} of {len(self.flags)}; "
            f"the gate rule: the {config.window_size} steps before each rearrangement)"
        )
        report.say(
            "rearrangements after steps " + (", ".join(str(e.step) for e in events) or "none")
        )
        report.say("  after step  balancedness before -> after  (mean/max tokens per GPU)")
        for event in events:
            stale = self.stale_placement(event)
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


def replay_per_gpu(model: DemoMoEModel, window: list[RecordedStep]) -> torch.Tensor:
    """The window's tokens mapped again, through the kernel and the new
    placement, counted into a scratch load (own flag and real-token count, so
    vLLM's state is left alone): what the same traffic puts on each GPU after
    the rearrangement."""
    load = torch.zeros(NUM_LAYERS, NUM_PHYSICAL, dtype=torch.int32)
    record = torch.tensor(True)
    for recorded in window:
        real_tokens = torch.tensor(recorded.real_tokens, dtype=torch.int64)
        for index, layer in enumerate(model.moe_layers):
            eplb_map_and_record_triton(
                topk_ids=recorded.routed[index],
                expert_load_view=load[index],
                logical_to_physical_map=layer.eplb_state.logical_to_physical_map,
                logical_replica_count=layer.eplb_state.logical_replica_count,
                record_enabled=record,
                real_token_count=real_tokens,
            )
    return per_gpu(load.long())


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


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("TRITON_INTERPRET") != "1" or not HAS_TRITON:
        print(
            "run under Triton's interpreter, with vLLM's Triton enabled:\n"
            "  TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES= .venv/bin/python -m eplb_fork.demo",
            file=sys.stderr,
        )
        return 2
    config = parse_args(argv)
    started = time.monotonic()
    with single_process_ep_group():
        demo = Demo(config)
        demo.run()
    png = config.out_dir / "eplb_demo.png"
    plot(demo, png)
    demo.summarize(png)
    demo.report.say(f"run time {time.monotonic() - started:.1f} s (after importing vLLM)")
    (config.out_dir / "summary.txt").write_text("\n".join(demo.report.lines) + "\n")
    return 1 if demo.report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
