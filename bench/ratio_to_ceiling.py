#!/usr/bin/env python3
"""Ratio of each shift_score benchmark to the plain reduction over the same
arrays (same shape, same dtype) from one Google Benchmark JSON run.

    bench_shift_score --benchmark_repetitions=9 \
        --benchmark_enable_random_interleaving=true \
        --benchmark_out=score.json --benchmark_out_format=json
    python3 bench/ratio_to_ceiling.py score.json
"""
import json
import re
import statistics
import sys


def main(path):
    with open(path) as f:
        run = json.load(f)
    rates = {}  # (kind, metric, label) -> [bytes/s per repetition]
    for b in run["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        m = re.match(r"BM_(ShiftScore|PlainReduction)<(?:rs::policies::(\w+), )?[^>]*>", b["name"])
        if not m:
            continue
        rates.setdefault((m.group(1), m.group(2), b["label"]), []).append(b["bytes_per_second"])

    ctx = run["context"]
    print(f"{ctx.get('host_name', '?')}: {ctx['num_cpus']} CPUs at {ctx['mhz_per_cpu']} MHz, "
          f"{ctx['date']}; medians of {max(len(v) for v in rates.values())} interleaved repetitions\n")
    print("| shape/dtype | metric | score GB/s | ceiling GB/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for (kind, metric, label), values in sorted(rates.items(), key=lambda kv: (kv[0][2], kv[0][1] or "")):
        if kind != "ShiftScore":
            continue
        ceiling = statistics.median(rates[("PlainReduction", None, label)])
        score = statistics.median(values)
        print(f"| {label} | {metric} | {score / 1e9:.1f} | {ceiling / 1e9:.1f} | {score / ceiling:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    main(sys.argv[1])
