#!/usr/bin/env python3
"""Two builds of model_timing side by side: before / after a change, or
one build under two environments. Each round runs every case's A then B
(order alternating by round), 2 OpenMP threads, and the table gives each
side's median images per second and the median of the per-round B/A
ratios, the number that survives a noisy shared machine.

  bench/ab_binaries.py OUT.md ROUNDS 'LABEL|A_BIN|B_BIN|ENV|ARGS' ...

ENV: space-separated K=V pairs for both sides ('' for none); ARGS: the
model_timing arguments, e.g. 'deit_s 1 unpruned 1.5'.
"""
import os
import statistics
import subprocess
import sys


def rate(binary, args, env):
    out = subprocess.run([binary] + args.split(), env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    if len(sys.argv) < 4 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    out_path, rounds = sys.argv[1], int(sys.argv[2])
    cases = [c.split("|") for c in sys.argv[3:]]
    results = {c[0]: ([], []) for c in cases}
    for r in range(rounds):
        for label, a_bin, b_bin, env_text, args in cases:
            env = dict(os.environ, OMP_NUM_THREADS="2", **dict(kv.split("=", 1) for kv in env_text.split()))
            order = [(0, a_bin), (1, b_bin)] if r % 2 == 0 else [(1, b_bin), (0, a_bin)]
            for side, binary in order:
                results[label][side].append(rate(binary, args, env))
            print(f"round {r + 1} {label}: A {results[label][0][-1]:.2f} B {results[label][1][-1]:.2f}", flush=True)
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    lines = [f"Machine: {cpu}, {os.cpu_count()} cores, OMP_NUM_THREADS=2; {rounds} rounds, A and B alternating.", "",
             "| case | A img/s | B img/s | B/A (median of rounds) | per-round B/A |", "|---|---:|---:|---:|---|"]
    for label, *_ in cases:
        a, b = results[label]
        ratios = [y / x for x, y in zip(a, b)]
        lines.append(f"| {label} | {statistics.median(a):.2f} | {statistics.median(b):.2f} | "
                     f"{statistics.median(ratios):.3f}x | {' '.join(f'{q:.2f}' for q in ratios)} |")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
