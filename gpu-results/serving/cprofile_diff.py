# SPDX-License-Identifier: Apache-2.0
"""What one engine's step runs in Python that another's does not: two of
engine_bench.py's cprofile-NAME.json files (paired_bench.py's profiled
steps), compared per function by calls per step (independent of the host's
speed) and own time per step (cProfile's, inflated alike in both).

    python cprofile_diff.py VARIANT.json BASELINE.json [--top N] [--by-file]
"""

import argparse
import json


def per_function(path: str, by_file: bool = False) -> dict[str, dict]:
    rows = json.load(open(path))["rows"]
    merged: dict[str, dict] = {}
    for row in rows:
        # One key per function wherever the install lives (the fork's and
        # upstream's site directories differ), whatever its line (the fork's
        # edits move the functions below them), and one for all the code
        # Inductor generated (each engine's cache names its files by hash).
        key = row["function"]
        if row["path"] != "~":
            where = row["path"].split("/vllm/", 1)[-1]
            if "inductor_cache" in where:
                where = "torch_compile_cache/(generated)"
            name = row["function"].split("(", 1)[-1].rstrip(")")
            key = where if by_file else f"{where}:{name}"
        mine = merged.setdefault(key, {"calls": 0.0, "own_ms": 0.0})
        mine["calls"] += row["calls_per_step"]
        mine["own_ms"] += row["own_ms_per_step"]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument("baseline")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--by-file", action="store_true", help="sum each file's functions")
    args = parser.parse_args()
    mine = per_function(args.variant, args.by_file)
    base = per_function(args.baseline, args.by_file)
    zero = {"calls": 0.0, "own_ms": 0.0}
    rows = []
    for key in mine.keys() | base.keys():
        a, b = mine.get(key, zero), base.get(key, zero)
        rows.append((a["own_ms"] - b["own_ms"], a["calls"] - b["calls"], a, b, key))
    total = sum(r[0] for r in rows)
    print(f"own time per step, variant - baseline: {total:+.3f} ms (under cProfile)")
    print(f"{'d own ms':>9} {'d calls':>9} {'calls':>9} {'base calls':>10}  function")
    for d_ms, d_calls, a, b, key in sorted(rows, key=lambda r: -abs(r[0]))[: args.top]:
        print(f"{d_ms:+9.3f} {d_calls:+9.1f} {a['calls']:9.1f} {b['calls']:10.1f}  {key}")
    changed = [r for r in rows if abs(r[1]) >= 0.5]
    print(f"\nfunctions whose calls per step differ: {len(changed)}")
    for d_ms, d_calls, _, _, key in sorted(changed, key=lambda r: -abs(r[1]))[: args.top]:
        print(f"{d_calls:+9.1f} calls {d_ms:+8.3f} ms  {key}")


if __name__ == "__main__":
    main()
