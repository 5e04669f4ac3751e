#!/usr/bin/env python3
"""Ratios from one bench_deit JSON run: pruned vs unpruned images/s per
model and batch, and the block-time overhead of the fused shift score.
Medians over the run's repetitions.

    python3 bench/summarize_deit.py deit.json
"""
import json
import statistics
import sys
from collections import defaultdict


def main(path):
    with open(path) as f:
        run = json.load(f)
    by_label = defaultdict(list)
    for b in run["benchmarks"]:
        if b.get("run_type") == "iteration":
            by_label[b["label"]].append(b)
    ctx = run["context"]
    reps = max(len(v) for v in by_label.values())
    print(f"{ctx.get('host_name', '?')}: {ctx['num_cpus']} CPUs, {ctx['date']}, "
          f"medians of {reps} interleaved repetitions\n")
    print("| model | batch | unpruned img/s | pruned img/s | speedup |")
    print("|---|---:|---:|---:|---:|")
    for model in ("deit_s", "deit_b"):
        for batch in (1, 8, 64):
            u = by_label.get(f"{model}/b{batch}/unpruned")
            p = by_label.get(f"{model}/b{batch}/pruned")
            if not u or not p:
                continue
            ui = statistics.median(x["images_per_s"] for x in u)
            pi = statistics.median(x["images_per_s"] for x in p)
            print(f"| {model} | {batch} | {ui:.2f} | {pi:.2f} | {pi / ui:.2f}x |")
    s = by_label.get("deit_s_block/b8/score")
    n = by_label.get("deit_s_block/b8/no_score")
    if s and n:
        ts = statistics.median(x["real_time"] for x in s)
        tn = statistics.median(x["real_time"] for x in n)
        print(f"\nDeiT-S block, batch 8: {tn:.2f} ms without the score, {ts:.2f} ms with it: "
              f"difference {100 * (ts - tn) / tn:+.2f}% (block-level, includes machine noise)")
        es = by_label.get("deit_s_epilogue/b8/score")
        en = by_label.get("deit_s_epilogue/b8/no_score")
        if es and en:
            # real_time is in the benchmark's unit: us for the epilogue, ms for the block.
            cost_ms = (statistics.median(x["real_time"] for x in es) -
                       statistics.median(x["real_time"] for x in en)) / 1000.0
            print(f"Score cost inside the residual epilogue: {cost_ms * 1000:.1f} us = "
                  f"{100 * cost_ms / tn:.2f}% of the block time")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    main(sys.argv[1])
