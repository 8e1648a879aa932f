# SPDX-License-Identifier: Apache-2.0
"""The run: skewed synthetic routing through every layer's map+record and
vLLM's `step()`, each step checked against the demo's own bookkeeping."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from vllm.config.parallel import EPLBConfig, ParallelConfig
from vllm.distributed.eplb.eplb_state import EplbLayerState
from vllm.distributed.eplb.policy import DefaultEplbPolicy
from vllm.model_executor.layers.fused_moe.router.base_router import (
    eplb_map_and_record_triton,
)

from eplb_demo.checks import BALANCE_SLACK, GateRule, Report, balancedness, per_gpu
from eplb_demo.model import (
    NUM_GPUS,
    NUM_LAYERS,
    NUM_LOGICAL,
    NUM_PHYSICAL,
    NUM_REDUNDANT,
    SLOTS_PER_GPU,
    TOP_K,
    DemoMoEModel,
    PolicyOnlyEplbState,
    Rearrangement,
)
from eplb_demo.summary import describe_rearrangement
from eplb_demo.traffic import PAD_TO, TOKENS_PER_STEP, ZIPF_EXPONENT, SkewedRouting
from eplb_fork.progress import Meter


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


@dataclass
class RecordedStep:
    step: int
    physical_load: torch.Tensor  # (layers, physical): the demo's own count
    logical_load: torch.Tensor  # (layers, logical): the same tokens, by logical id
    routed: list[torch.Tensor]  # per layer: logical ids, padding rows included
    real_tokens: int


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
        with Meter("steps", config.steps, show=lambda done: f"{done}/{config.steps}") as meter:
            report.meter = meter
            for step in range(config.steps):
                meter.update(step)
                self.step(step)
            meter.update(config.steps)

    def step(self, step: int) -> None:
        """One forward, then vLLM's `step()`, which may rearrange."""
        if step == self.config.drift_step:
            self.routing.drift()
        self.forward(step)
        self.state.current_step = step
        seen = len(self.state.rearrangements)
        self.state.step()
        rearranged = len(self.state.rearrangements) > seen
        self.report.check(rearranged == self.rule.advance(), f"step {step}: rearrangement as due")
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
