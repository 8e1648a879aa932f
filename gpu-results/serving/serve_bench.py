# SPDX-License-Identifier: Apache-2.0
"""`vllm serve` with EPLB, upstream against the fork, on localhost.

The servers run at once on the one GPU, each with `--enable-expert-parallel`:
upstream and the fork with `--enable-eplb`, and (with --eplb-off) both again
without it, on a model of Qwen3-30B-A3B's shapes with few enough layers that
all fit. Rounds of traffic go to one server at a time, in turn, so none slows
another; a first round warms every server up and is not counted. A small
client of the OpenAI completions API streams each request and takes TTFT
(first token), ITL (between tokens) and throughput: prefill-heavy traffic
(2048-token prompts, 8 output tokens) and mixed traffic (512-token prompts,
64 output tokens). Greedy outputs for the same prompts are compared with
upstream's EPLB server before and after the traffic; EPLB rearranges every
STEP_INTERVAL steps and each server's log says when.
EPLB on one GPU: vLLM's TP x DP > 1 check is lifted in the harness's
processes (one_gpu_lift.py), "one GPU, check lifted". With --dp 2 (the
nvidia-h200-x2 kind) nothing is lifted: each server spans both GPUs, with
8 redundant experts, balancedness logged and skewed routing (EPLB_DP).
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

# No redundant experts here: dummy weights give each physical slot its own
# random values, so replicas of one expert differ and a replica rule other
# than upstream's would change the output; with one slot per expert the
# greedy outputs must match exactly, through every rearrangement.
EPLB = {"window_size": 100, "step_interval": 200, "num_redundant_experts": 0}
# Two GPUs (--dp 2, nothing lifted): redundant experts, balancedness logged,
# and routing skewed by vLLM's own simulator (normal_routing: the middle
# experts hot), so rearrangements have something to fix.
EPLB_DP = {**EPLB, "num_redundant_experts": 8, "log_balancedness": True}
TRAFFIC = {  # requests, prompt tokens, output tokens, concurrency
    "prefill_heavy": (32, 2048, 8, 8),
    "mixed": (64, 512, 64, 16),
}
ROUNDS = 4  # counted, after one warm-up round
# All servers share the GPU: this much of it between them.
GPU_SHARE = 0.86


def start(name, site, eplb_on, here, model, port, out: Path, dp: int, share: float):
    env = {**os.environ, "PYTHONPATH": f"{site}:{here}"}
    env["EPLB_ONE_GPU_LIFT"] = "1" if dp == 1 else "0"
    eplb = EPLB if dp == 1 else EPLB_DP
    if dp > 1:
        env["VLLM_MOE_ROUTING_SIMULATION_STRATEGY"] = "normal_routing"
    command = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model,
        "--tokenizer", model, "--load-format", "dummy", "--port", str(port),
        "--enable-expert-parallel", "--data-parallel-size", str(dp),
        "--max-model-len", "4096", "--no-enable-prefix-caching", "--max-num-seqs", "64",
        "--gpu-memory-utilization", f"{share:.2f}", "--seed", "0",
        "--compilation-config", json.dumps({"cudagraph_capture_sizes": [1, 2, 4, 8, 16, 32, 64]}),
    ]  # fmt: skip
    if eplb_on:
        command += ["--enable-eplb", "--eplb-config", json.dumps(eplb)]
    log = (out / f"serve-{name}.log").open("w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(session, port: int, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            async with session.get(f"http://127.0.0.1:{port}/health") as r:
                if r.status == 200:
                    return True
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(2)
    return False


def prompt_ids(index: int, length: int) -> list[int]:
    # Deterministic, distinct per request: words t3..t31999.
    return [3 + (index * 7919 + k * 104729) % 31997 for k in range(length)]


async def one_request(session, port, model, ids, max_tokens):
    body = {"model": model, "prompt": ids, "max_tokens": max_tokens, "temperature": 0.0,
            "ignore_eos": True, "stream": True}  # fmt: skip
    t0 = time.perf_counter()
    stamps, text = [], []
    async with session.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as r:
        async for raw in r.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            piece = chunk["choices"][0].get("text", "")
            if piece:
                stamps.append(time.perf_counter() - t0)
                text.append(piece)
    return stamps, "".join(text)


async def traffic(session, port, model, kind, seed):
    count, length, out_tokens, concurrency = TRAFFIC[kind]
    gate = asyncio.Semaphore(concurrency)

    async def limited(i):
        async with gate:
            return await one_request(session, port, model, prompt_ids(seed + i, length), out_tokens)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(limited(i) for i in range(count)))
    wall = time.perf_counter() - t0
    ttft = [s[0] * 1000 for s, _ in results if s]
    itl = [(b - a) * 1000 for s, _ in results for a, b in zip(s, s[1:], strict=False)]
    tokens = sum(len(s) for s, _ in results)
    return {
        "ttft_median_ms": statistics.median(ttft),
        "ttft_p99_ms": sorted(ttft)[max(0, int(len(ttft) * 0.99) - 1)],
        "itl_median_ms": statistics.median(itl) if itl else None,
        "output_tok_s": tokens / wall,
        "requests_s": count / wall,
    }


async def same_greedy(session, servers, model) -> dict[str, bool]:
    """Per server, whether its greedy text for 16 prompts is upstream's
    EPLB server's."""
    texts = {}
    for name, (_, _, port) in servers.items():
        outs = await asyncio.gather(*(
            one_request(session, port, model, prompt_ids(10_000 + i, 300), 24)
            for i in range(16)
        ))  # fmt: skip
        texts[name] = [text for _, text in outs]
    return {name: text == texts["upstream"] for name, text in texts.items() if name != "upstream"}


async def main_async(args):
    out = Path(args.out)
    servers = {"upstream": (args.site_up, True, 8100), "fork": (args.site_fork, True, 8200)}
    if args.eplb_off:
        servers["upstream-noeplb"] = (args.site_up, False, 8300)
        servers["fork-noeplb"] = (args.site_fork, False, 8400)
    share = GPU_SHARE / len(servers)
    procs = {}
    report = {"eplb_config": EPLB if args.dp == 1 else EPLB_DP, "dp": args.dp,
              "traffic": TRAFFIC, "rounds": []}  # fmt: skip
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, (site, eplb_on, port) in servers.items():
            procs[name] = start(
                name, site, eplb_on, args.here, args.model, port, out, args.dp, share
            )
            # One at a time: each profiles the GPU's free memory as it starts.
            if not await wait_ready(session, port, 300):
                print(f"{name} did not come up", flush=True)
                report["error"] = f"{name} did not come up"
                return report
            print(f"{name} ready", flush=True)
        report["greedy_equal_before"] = await same_greedy(session, servers, args.model)
        for round_ in range(-1, ROUNDS):  # round -1 warms up, not counted
            for kind in TRAFFIC:
                for name, (_, _, port) in servers.items():
                    row = await traffic(session, port, args.model, kind, seed=(round_ + 1) * 1000)
                    row.update(server=name, kind=kind, round=round_)
                    if round_ >= 0:
                        report["rounds"].append(row)
                    print(json.dumps(row), flush=True)
        # Again after the traffic: the servers have rearranged meanwhile.
        report["greedy_equal_after"] = await same_greedy(session, servers, args.model)
    for proc in procs.values():
        proc.terminate()
    for name, proc in procs.items():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log = (out / f"serve-{name}.log").read_text(errors="replace")
        # Async EPLB logs when a rearrangement starts (its time only in sync mode).
        # With balancedness logged (two GPUs): mean/max tokens per rank, per step.
        report[f"{name}_balancedness"] = [
            float(b) for b in re.findall(r"balancedness=([0-9.]+)", log)
        ]
        report[f"{name}_rearrangements"] = len(
            re.findall(r"Rearranging experts \(async mode\) \.\.\.|Rearranged experts\s+in", log)
        )
    return report


def summarize(report) -> str:
    head = "server          traffic        TTFT med  TTFT p99  ITL med   tok/s"
    lines = [head + "   (median of rounds)"]
    names = list(dict.fromkeys(r["server"] for r in report["rounds"]))
    for kind in TRAFFIC:
        for name in names:
            rows = [r for r in report["rounds"] if r["server"] == name and r["kind"] == kind]
            if not rows:
                continue
            keys = ("ttft_median_ms", "ttft_p99_ms", "itl_median_ms", "output_tok_s")
            med = {k: statistics.median(r[k] for r in rows if r[k] is not None) for k in keys}
            lines.append(
                f"{name:15} {kind:14} {med['ttft_median_ms']:8.1f} {med['ttft_p99_ms']:9.1f} "
                f"{med['itl_median_ms']:8.2f} {med['output_tok_s']:8.1f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--site-up", required=True)
    parser.add_argument("--site-fork", required=True)
    parser.add_argument("--here", required=True)
    parser.add_argument("--dp", type=int, default=1, help="data-parallel ranks (GPUs)")
    parser.add_argument("--eplb-off", action="store_true", help="both again without EPLB")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    Path(args.out, "serve.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}), flush=True)
    if report.get("rounds"):
        summary = summarize(report)
        Path(args.out, "serve.txt").write_text(summary + "\n")
        print(summary, flush=True)


if __name__ == "__main__":
    main()
