# SPDX-License-Identifier: Apache-2.0
"""One variant of vLLM's offline engine on the GPU machine: step times for
prefill-heavy and decode batches, greedy tokens, a profile of one 1024-token
prefill step, and (with --check-load) the recorded EPLB window against the
routing's own counts. One process per variant (the engine core runs in it:
VLLM_ENABLE_V1_MULTIPROCESSING=0); which vLLM it is (upstream or the fork)
is whatever is first on PYTHONPATH. EPLB on one GPU needs the harness's
check lift (EPLB_ONE_GPU_LIFT=1): its numbers are "one GPU, check lifted".

    python engine_bench.py --name NAME --model DIR [--eplb R] [--record]
        [--check-load] --out DIR
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

# prompts x prompt tokens, output tokens, timed calls
SETS = {"prefill_8x2048": (8, 2048, 1), "prefill_2x512": (2, 512, 1), "decode_64x64": (64, 64, 64)}
CALLS = 7


def prompts(count: int, length: int, seed: int):
    from vllm.inputs import TokensPrompt

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 32000, (count, length), generator=gen)
    return [TokensPrompt(prompt_token_ids=row.tolist()) for row in ids]


def eplb_kwargs(redundant: int | None, record: bool, use_async: bool) -> dict:
    if redundant is None:
        return {}
    # Recording is on iff step_interval - step <= window_size; the counter
    # starts at step_interval - step_interval // 4.
    window, interval = (4000, 3000) if record else (10, 100_000)
    return {
        "enable_eplb": True,
        "eplb_config": {
            "window_size": window, "step_interval": interval,
            "num_redundant_experts": redundant, "use_async": use_async,
        },
    }  # fmt: skip


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of each of this process's threads, by name and id."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


class MainThreadProbe:
    """What the calling thread spent between two points: user and system CPU,
    minor page faults, voluntary and involuntary context switches (from
    /proc), and time in Python's garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        import gc
        import threading

        self.task = Path(f"/proc/self/task/{threading.get_native_id()}")
        self.gc_s, self.gc_runs, self._gc_t0 = 0.0, 0, 0.0

        def timed(phase, info):
            if phase == "start":
                self._gc_t0 = time.perf_counter()
            else:
                self.gc_s += time.perf_counter() - self._gc_t0
                self.gc_runs += 1

        gc.callbacks.append(timed)

    def snapshot(self) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        fields = (self.task / "stat").read_text().rsplit(")", 1)[1].split()
        status = dict(
            line.split(":", 1) for line in (self.task / "status").read_text().splitlines()
        )
        return {
            "user_s": int(fields[11]) / ticks, "sys_s": int(fields[12]) / ticks,
            "minflt": int(fields[7]), "cpu": int(fields[36]),
            "vol_cs": int(status["voluntary_ctxt_switches"]),
            "invol_cs": int(status["nonvoluntary_ctxt_switches"]),
            "gc_s": self.gc_s, "gc_runs": self.gc_runs,
        }  # fmt: skip

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        delta = {k: round(now[k] - before[k], 4) for k in now if k != "cpu"}
        delta["cpu_last"] = now["cpu"]
        delta["affinity"] = len(os.sched_getaffinity(0))
        return delta


def machine_busy() -> tuple[int, int]:
    """The machine's busy and total CPU ticks so far, over all processes."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class LoadShadow:
    """The routing's own counts: wraps the router's map+record entry point,
    adding each call's physical ids (its unpadded rows, when the flag is set)
    into a per-layer int64 row on the device, so CUDA graphs replay it too."""

    def __init__(self) -> None:
        import vllm.model_executor.layers.fused_moe.router.base_router as router

        self.rows: dict[int, torch.Tensor] = {}
        original = router.eplb_map_to_physical_and_record

        def recorded(*args, **kwargs):
            out = original(*args, **kwargs)
            names = ("topk_ids", "expert_load_view", "l2p", "counts", "flag", "num_unpadded")
            given = dict(zip(names, args, strict=False))
            expert_load_view = kwargs.get("expert_load_view", given.get("expert_load_view"))
            flag = kwargs.get("record_enabled", given.get("flag"))
            num_unpadded = kwargs.get("num_unpadded_tokens", given.get("num_unpadded"))
            flat = out.reshape(-1).long()
            keep = (flat >= 0) & flag
            if num_unpadded is not None:
                rows = torch.arange(flat.numel(), device=flat.device) // out.shape[-1]
                keep &= rows < num_unpadded
            key = expert_load_view.data_ptr()
            if key not in self.rows:
                size = expert_load_view.shape[-1]
                self.rows[key] = torch.zeros(size, dtype=torch.int64, device=flat.device)
            self.rows[key].index_add_(0, torch.where(keep, flat, 0), keep.long())
            return out

        router.eplb_map_to_physical_and_record = recorded

    def by_layer(self) -> torch.Tensor:
        """[layers, physical], layers in the order their rows lie in memory
        (the pass's rows, or the fork's shards, are laid out by layer)."""
        return torch.stack([self.rows[k] for k in sorted(self.rows)]).cpu()


def window_of(worker):
    state = worker.model_runner.eplb_state
    (model,) = state.model_states.values()
    return model.expert_load_window.sum(0).cpu(), state.expert_rearrangement_step


def start_async_thread(worker):
    """Starts EPLB's async worker thread that --thread-ab held back."""
    state = worker.model_runner.eplb_state
    state.start_async_loop()
    return state.async_worker is not None


def thread_ab(llm, args, result, probe) -> None:
    """1024-token prefill steps in one engine, first without EPLB's async
    worker thread, then with it: the thread's own cost, nothing else changed."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, ignore_eos=True)
    # A started thread cannot be stopped, so "without" comes first.
    for label in ("no_async_thread", "async_thread"):
        if label == "async_thread":
            result["thread_started"] = llm.collective_rpc(start_async_thread)[0]
        times, before = [], probe.snapshot()
        for call in range(CALLS + 2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            llm.generate(prompts(2, 512, seed=call), params, use_tqdm=False)
            torch.cuda.synchronize()
            if call >= 2:
                times.append((time.perf_counter() - t0) * 1000)
        result[f"prefill_2x512_{label}_ms"] = round(statistics.median(times), 2)
        result[f"prefill_2x512_{label}_main_thread"] = probe.since(before)
        print(args.name, label, result[f"prefill_2x512_{label}_ms"], "ms", flush=True)


def host_speed() -> dict[str, float]:
    """This process's host speed right now: a fixed pure-Python workload and
    1000 empty device allocations (one dispatch each), in ms."""
    t0 = time.perf_counter()
    sum(len(str(i)) for i in range(100_000))
    t1 = time.perf_counter()
    for _ in range(1000):
        torch.empty(16, device="cuda")
    t2 = time.perf_counter()
    return {"python_ms": round((t1 - t0) * 1000, 3), "dispatch_ms": round((t2 - t1) * 1000, 3)}


def serve_steps(llm, probe, name: str, out: Path) -> None:
    """--steps: one 1024-token prefill step (2 x 512) per "call SEED" line on
    stdin, answered by a JSON line: its time, the main thread's CPU, and the
    host speed measured just before. paired_bench.py drives several of these
    engines in turn, so their calls are side by side in time.

    "profile SEED" takes the step under cProfile (the main thread: with
    VLLM_ENABLE_V1_MULTIPROCESSING=0 that is scheduler, runner and EPLB's
    step alike), its time not comparable; "dump" writes the profile of all
    such steps, calls per step and own time per function, to
    cprofile-NAME.json. Calls per step do not depend on the host's speed."""
    import cProfile
    import pstats
    import sys

    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, ignore_eos=True)
    profiler, profiled = cProfile.Profile(), 0
    print("READY", flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "dump":
            stats = pstats.Stats(profiler).stats  # (file, line, function) -> (cc, nc, tt, ct, ..)
            rows = [{"function": f"{Path(f).name}:{n}({fn})", "path": f,
                     "calls_per_step": nc / profiled, "own_ms_per_step": tt * 1000 / profiled,
                     "total_ms_per_step": ct * 1000 / profiled}
                    for (f, n, fn), (_, nc, tt, ct, _) in stats.items()]  # fmt: skip
            rows.sort(key=lambda r: -r["own_ms_per_step"])
            report = {"steps": profiled, "rows": rows}
            (out / f"cprofile-{name}.json").write_text(json.dumps(report))
            print(json.dumps({"ms": 0.0, "dumped": profiled}), flush=True)
            continue
        seed = int(rest[0])
        speed, before = host_speed(), probe.snapshot()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if command == "profile":
            profiler.enable()
        llm.generate(prompts(2, 512, seed=seed), params, use_tqdm=False)
        torch.cuda.synchronize()
        if command == "profile":
            profiler.disable()
            profiled += 1
        ms = (time.perf_counter() - t0) * 1000
        used = probe.since(before)
        print(json.dumps({"ms": round(ms, 3), "user_s": used["user_s"], **speed}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--eplb", type=int, default=None, help="redundant experts")
    parser.add_argument("--record", action="store_true", help="record every step")
    parser.add_argument("--check-load", action="store_true")
    parser.add_argument("--sync", action="store_true", help="EPLB's synchronous mode")
    parser.add_argument("--thread-ab", action="store_true", help="async thread held back, then on")
    parser.add_argument(
        "--stand-in-thread", choices=("bare", "device", "stream"),
        help="async mode, its worker replaced by a parked thread that first makes"
        " no CUDA call (bare), sets the device (device), or also takes a stream",
    )  # fmt: skip
    parser.add_argument("--steps", action="store_true", help="steps on request (stdin)")
    parser.add_argument("--gpu-share", type=float, default=0.85)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.distributed.eplb.eplb_state import EplbState

    rearranged = []
    rearrange = EplbState.rearrange

    def counted(self, *a, **kw):
        if not kw.get("is_profile", False):
            rearranged.append(self.expert_rearrangement_step)
        return rearrange(self, *a, **kw)

    EplbState.rearrange = counted
    if args.stand_in_thread:  # harness only: a parked thread with part of the worker's state
        import threading

        import vllm.distributed.eplb.eplb_state as eplb_state_module

        def stand_in(state, is_profile=False):
            def park():
                if args.stand_in_thread != "bare":
                    torch.accelerator.set_device_index(state.cuda_device_index)
                if args.stand_in_thread == "stream":
                    torch.cuda.Stream(device=state.cuda_device_index)
                threading.Event().wait()

            thread = threading.Thread(target=park, daemon=True)
            thread.start()
            return thread

        eplb_state_module.start_async_worker = stand_in
    if args.thread_ab:  # harness only: the engine starts without the thread
        held_back = EplbState.start_async_loop
        EplbState.start_async_loop = lambda self, *a, **kw: None

    shadow = LoadShadow() if args.check_load else None
    probe = MainThreadProbe()
    started = time.monotonic()
    llm = LLM(
        model=args.model, tokenizer=args.model, load_format="dummy", dtype="bfloat16",
        enable_expert_parallel=True, enable_prefix_caching=False, max_model_len=4096,
        max_num_batched_tokens=16384, max_num_seqs=64, gpu_memory_utilization=args.gpu_share,
        seed=0, **eplb_kwargs(args.eplb, args.record, not args.sync),
        # Graphs up to the decode batch (512 by default): engine start halves,
        # and steps above 64 tokens run eagerly, as those above 512 do anyway.
        compilation_config={"cudagraph_capture_sizes": [1, 2, 4, 8, 16, 32, 64]},
    )  # fmt: skip
    if shadow is not None:
        # Capture and warm-up ran dummy forwards: their counts are dropped by
        # EplbState, so start both sides from here.
        with torch.inference_mode():  # the rows were made inside the engine's
            for row in shadow.rows.values():
                row.zero_()
        baseline, _ = llm.collective_rpc(window_of)[0]
    import sys
    import threading

    result = {"name": args.name, "vllm": vllm.__version__, "eplb": args.eplb,
              "threads": sorted(t.name for t in threading.enumerate()),
              "switch_interval_s": sys.getswitchinterval(),
              "record": args.record, "start_s": round(time.monotonic() - started, 1)}  # fmt: skip
    if args.steps:
        serve_steps(llm, probe, args.name, args.out)
        os._exit(0)
    if args.thread_ab:
        EplbState.start_async_loop = held_back
        thread_ab(llm, args, result, probe)
        with (args.out / "engine.jsonl").open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
        os._exit(0)
    greedy = {}
    for label, (count, length, out_tokens) in SETS.items():
        params = SamplingParams(max_tokens=out_tokens, temperature=0.0, detokenize=False,
                                ignore_eos=True)  # fmt: skip
        times = []
        threads_before, busy_before, main_before = thread_cpu(), machine_busy(), probe.snapshot()
        for call in range(CALLS + 2):
            batch = prompts(count, length, seed=call)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs = llm.generate(batch, params, use_tqdm=False)
            torch.cuda.synchronize()
            if call >= 2:
                times.append((time.perf_counter() - t0) * 1000)
            if call == 2:
                greedy[label] = [list(o.outputs[0].token_ids) for o in outs]
        result[label + "_ms"] = round(statistics.median(times), 2)
        # Who used the CPU meanwhile: the busiest threads of this process,
        # and the machine's cores kept busy (by any process), on average.
        threads_after, busy_after = thread_cpu(), machine_busy()
        used = {k: v - threads_before.get(k, 0.0) for k, v in threads_after.items()}
        busiest = sorted(used.items(), key=lambda kv: -kv[1])[:6]
        result[label + "_threads_cpu_s"] = {k: round(v, 3) for k, v in busiest}
        cores = os.cpu_count() or 1
        share = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
        result[label + "_machine_busy_cores"] = round(share * cores, 2)
        result[label + "_main_thread"] = probe.since(main_before)
        print(args.name, label, result[label + "_ms"], "ms", flush=True)
    result["greedy"] = greedy
    # One 1024-token prefill step under the profiler: host time per op.
    from torch.profiler import ProfilerActivity, profile

    params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        llm.generate(prompts(2, 512, seed=99), params, use_tqdm=False)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=45)
    (args.out / f"profile-{args.name}.txt").write_text(table)
    events = {e.key: e for e in prof.key_averages()}
    result["profile_moe_forward_self_cpu_ms"] = (
        round(events["vllm::moe_forward"].self_cpu_time_total / 1000, 2)
        if "vllm::moe_forward" in events
        else None
    )
    if shadow is not None:
        window, step = llm.collective_rpc(window_of)[0]
        window = window - baseline
        routed = shadow.by_layer()
        result["load_check"] = {
            "window_total": int(window.sum()),
            "routed_total": int(routed.sum()),
            "equal": bool(torch.equal(window.long(), routed)),
            "step": step,
        }
    result["rearrangements_at"] = rearranged
    with (args.out / "engine.jsonl").open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "greedy"}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
