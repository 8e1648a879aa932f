# SPDX-License-Identifier: Apache-2.0
"""Several engines side by side in time: each variant is an engine_bench.py
--steps process on its own share of the GPU, started one at a time; then,
round after round, each takes one 1024-token prefill step in a shuffled
order, so every variant's steps meet the same state of the machine. A step's
ratio to the baseline's step of the same round cancels what drifts between
rounds (this machine's host speed does, by up to 1.5x, within a process).

    python paired_bench.py --out DIR --baseline NAME \\
        --variant NAME PYTHONPATH ENGINE_BENCH_ARGS... [--variant ...]
"""

import argparse
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROUNDS, WARMUP = 40, 3
# After the timed rounds, steps under cProfile (engine_bench.py's "profile"):
# which Python each variant runs per step, outside the timed ones.
PROFILED = 8


def start(name: str, pythonpath: str, extra: list[str], out: Path, share: float):
    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=pythonpath, VLLM_ENABLE_V1_MULTIPROCESSING="0")
    command = [sys.executable, str(here / "engine_bench.py"), "--name", name, "--out", str(out),
               "--steps", "--gpu-share", str(share), *extra]  # fmt: skip
    log = (out / f"log-{name}.txt").open("a")
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log, text=True, bufsize=1)  # fmt: skip
    answer(proc, lambda line: line == "READY")  # one at a time: each profiles free memory
    return proc


def answer(proc, wanted):
    """The first line of proc's stdout that wanted() accepts (vLLM may print
    its own lines there too)."""
    for line in proc.stdout:
        if wanted(line.strip()):
            return line.strip()
    raise RuntimeError(f"engine ended (rc={proc.wait()}) before answering")


def step(proc, seed: int, command: str = "call") -> dict:
    proc.stdin.write(f"{command} {seed}\n")
    return json.loads(answer(proc, lambda line: line.startswith('{"ms"')))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--variant", nargs=3, action="append", required=True,
                        metavar=("NAME", "PYTHONPATH", "ARGS"))  # fmt: skip
    args = parser.parse_args()
    procs = {}
    for name, pythonpath, extra in args.variant:
        procs[name] = start(name, pythonpath, shlex.split(extra), args.out, args.share)
        print(name, "ready", flush=True)
    order, rows = random.Random(0), []
    for round_ in range(WARMUP + ROUNDS):
        names = list(procs)
        order.shuffle(names)
        for name in names:
            row = step(procs[name], seed=round_)
            row.update(variant=name, round=round_ - WARMUP)
            if round_ >= WARMUP:
                rows.append(row)
    for round_ in range(PROFILED):
        for name in procs:
            step(procs[name], seed=1000 + round_, command="profile")
    for proc in procs.values():
        step(proc, seed=0, command="dump")
    summary = {}
    base = {r["round"]: r["ms"] for r in rows if r["variant"] == args.baseline}
    for name in procs:
        mine = [r for r in rows if r["variant"] == name]
        summary[name] = {
            "median_ms": round(statistics.median(r["ms"] for r in mine), 2),
            "min_ms": round(min(r["ms"] for r in mine), 2),
            "max_ms": round(max(r["ms"] for r in mine), 2),
            "ratio_to_baseline_median": round(
                statistics.median(r["ms"] / base[r["round"]] for r in mine), 3
            ),
            "python_ms_median": round(statistics.median(r["python_ms"] for r in mine), 2),
            "dispatch_ms_median": round(statistics.median(r["dispatch_ms"] for r in mine), 2),
        }
        print(name, json.dumps(summary[name]), flush=True)
    report = {"baseline": args.baseline, "rounds": ROUNDS, "warmup": WARMUP,
              "variants": {n: [p, e] for n, p, e in args.variant},
              "summary": summary, "steps": rows}  # fmt: skip
    (args.out / "paired.json").write_text(json.dumps(report, indent=1))
    for proc in procs.values():
        proc.stdin.close()
        proc.kill()


if __name__ == "__main__":
    main()
