#!/usr/bin/env python3
"""Cold featurization of ruby valid: ours against the Python reference, in the same run.

Runs, in alternation for --rounds rounds (so that a change in the machine's other load hits
both sides alike):
  * the reference featurization of tools/bench_reference_featurize.py (read_examples +
    slow-tokenizer BPE + convert_examples_to_features, one Python process, fresh BPE cache);
  * our `bench_featurize` example (fresh tokenizer per repetition; featurize with the
    tokenizer loaded, a whole cold `prepare`, a warm cache load).
It prints a Markdown table: best wall time and examples/s of each, CPU seconds, and the
ratios to the reference (the issue's target: cold >= 10x).

    cargo build --release --example bench_featurize
    python3 tools/bench_featurize_ratio.py --shared ../shared [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))
from bench_reference_featurize import featurize  # noqa: E402
from tokenize_reference import SlowRoberta  # noqa: E402


def reference_once(shared):
    rb = os.path.join(shared, "data", "roberta-base")
    path = os.path.join(shared, "data", "codesearchnet", "ruby", "valid.jsonl")
    tok = SlowRoberta(os.path.join(rb, "vocab.json"), os.path.join(rb, "merges.txt"))
    t0, c0 = time.perf_counter(), time.process_time()
    n = len(featurize(tok, path))
    return n, time.perf_counter() - t0, time.process_time() - c0


def ours_once(binary, shared, repeat):
    out = subprocess.run(
        [binary, "--repeat", str(repeat),
         "--data", os.path.join(shared, "data", "codesearchnet", "ruby", "valid.jsonl"),
         "--tokenizer", os.path.join(shared, "data", "roberta-base")],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="our repetitions per round")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "examples",
                                                     "bench_featurize"))
    args = ap.parse_args()
    if not os.path.isfile(args.binary):
        sys.exit(f"{args.binary} not found: cargo build --release --example bench_featurize")

    ref_wall = ref_cpu = None
    ours = {}
    for _ in range(args.rounds):
        n, wall, cpu = reference_once(args.shared)
        ref_wall = wall if ref_wall is None else min(ref_wall, wall)
        ref_cpu = cpu if ref_cpu is None else min(ref_cpu, cpu)
        report = ours_once(args.binary, args.shared, args.repeat)
        if report["examples"] != n:
            sys.exit(f"example counts differ: reference {n}, ours {report['examples']}")
        for key in ("tokenizer_load", "featurize", "cold_prepare", "warm_load"):
            best = ours.setdefault(key, {"wall_s": float("inf"), "cpu_s": float("inf")})
            best["wall_s"] = min(best["wall_s"], report[key]["wall_s"])
            best["cpu_s"] = min(best["cpu_s"], report[key]["cpu_s"])
        threads = report["threads"]

    print(f"ruby valid, {n} examples; best of {args.rounds} rounds (ours: {args.repeat} "
          f"repetitions a round, {threads} threads); load average now "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| measurement | wall ms | examples/s | CPU ms | vs reference (wall) | vs reference (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| reference featurize (Python, 1 process) | {ref_wall * 1e3:.1f} | "
          f"{n / ref_wall:,.0f} | {ref_cpu * 1e3:.1f} | 1.0x | 1.0x |")
    names = {
        "featurize": "ours, featurize (tokenizer loaded)",
        "cold_prepare": "ours, cold prepare (hash, tokenizer load, features, shards)",
        "warm_load": "ours, warm cache load",
        "tokenizer_load": "ours, tokenizer load alone",
    }
    for key, label in names.items():
        wall, cpu = ours[key]["wall_s"], ours[key]["cpu_s"]
        ratios = ("–", "–") if key == "tokenizer_load" else (
            f"{ref_wall / wall:.1f}x", f"{ref_cpu / cpu:.1f}x")
        print(f"| {label} | {wall * 1e3:.1f} | {n / wall:,.0f} | {cpu * 1e3:.1f} | "
              f"{ratios[0]} | {ratios[1]} |")


if __name__ == "__main__":
    main()
