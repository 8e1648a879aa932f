# SPDX-License-Identifier: Apache-2.0
"""`python -m eplb_demo [--short]`: run, plot, summarize; exit 1 on a failed check."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from vllm.triton_utils import HAS_TRITON

from eplb_demo.model import single_process_ep_group
from eplb_demo.plot import plot
from eplb_demo.run import Demo, DemoConfig
from eplb_demo.summary import summarize
from eplb_fork import REPO_ROOT


def parse_args(argv: list[str] | None) -> DemoConfig:
    parser = argparse.ArgumentParser(
        prog="python -m eplb_demo",
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


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("TRITON_INTERPRET") != "1" or not HAS_TRITON:
        print(
            "run under Triton's interpreter, with vLLM's Triton enabled:\n"
            "  TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES= .venv/bin/python -m eplb_demo",
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
    summarize(demo, png)
    demo.report.say(f"run time {time.monotonic() - started:.1f} s (after importing vLLM)")
    (config.out_dir / "summary.txt").write_text("\n".join(demo.report.lines) + "\n")
    return 1 if demo.report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
