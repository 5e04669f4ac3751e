#!/usr/bin/env python3
"""Would a newer oneDNN pay? The project builds against Debian's oneDNN
2.6 (libdnnl-dev, the default) and against 3.x (cpu/onednn_compat.hpp).
This runs rs::cpu::DenseLayers::linear (bench_linear_onednn's
BM_DenseLayersF32 and, where the CPU has AVX512-BF16 or AMX,
BM_DenseLayersBf16: DeiT-S's and UMT-B's layer shapes) built both ways,
side by side: interleaved rounds, the order alternating, 2 threads.

    python3 bench/peer/onednn_versions.py build/release/bench [OUT.md] [--rounds N]

The second build is build/onednn3, against PyPI's oneDNN 3.2 for GNU
OpenMP (cmake/install_onednn3.sh installs it into build/onednn-3.2, a ~40
MB download; this script configures build/onednn3 and builds the benchmark
there). Whole models: `cmake --build build/onednn3 --target model_timing`
and run both model_timing binaries through bench/ab_binaries.py.
"""
import argparse
import csv
import datetime
import io
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = os.path.join(ROOT, "build", "onednn-3.2")
BUILD3 = os.path.join(ROOT, "build", "onednn3")
FILTER = "BM_DenseLayers(F32|Bf16)/"


def build_against_onednn3():
    subprocess.run(["bash", os.path.join(ROOT, "cmake/install_onednn3.sh"), PREFIX], check=True)
    subprocess.run(["cmake", "-S", ROOT, "-B", BUILD3, "-DCMAKE_BUILD_TYPE=Release", "-DREPSHIFT_ENABLE_CUDA=OFF",
                    "-DREPSHIFT_BUILD_BENCH=ON", f"-Ddnnl_DIR={PREFIX}/lib/cmake/dnnl"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD3, "-j2", "--target", "bench_linear_onednn"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(BUILD3, "bench", "bench_linear_onednn")


def run(binary):
    """GFLOP/s per benchmark name (skipped ones, e.g. bf16 without native support, left out)."""
    out = subprocess.run([binary, f"--benchmark_filter={FILTER}", "--benchmark_min_time=0.3",
                          "--benchmark_format=csv"], env=dict(os.environ, OMP_NUM_THREADS="2"),
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    table = out[out.index("name,"):]  # Google Benchmark prints its context before the CSV
    rates = {}
    for row in csv.DictReader(io.StringIO(table)):
        if row.get("error_occurred") == "true" or not row.get("GFLOP/s"):
            continue
        rates[row["name"].replace("/real_time", "")] = float(row["GFLOP/s"])
    return rates


def main():
    parser = argparse.ArgumentParser(description="rs::cpu::DenseLayers on oneDNN 2.6 and 3.2, side by side")
    parser.add_argument("bench_dir", help="the default build's bench folder, e.g. build/release/bench")
    parser.add_argument("out", nargs="?", help="markdown table to write")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base = os.path.join(args.bench_dir, "bench_linear_onednn")
    if not os.access(base, os.X_OK):
        sys.exit(f"onednn_versions: {base} not found: build the default tree first")
    builds = {"2.6": base, "3.2": build_against_onednn3()}
    rates = {v: {} for v in builds}
    for r in range(args.rounds):
        for v in (list(builds) if r % 2 == 0 else list(reversed(builds))):
            for name, rate in run(builds[v]).items():
                rates[v].setdefault(name, []).append(rate)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"rs::cpu::DenseLayers::linear built against oneDNN 2.6 (Debian) and 3.2 (PyPI onednn-cpu-gomp "
             f"2023.2.0), {cpu}, 2 threads, {datetime.date.today()}; GFLOP/s, medians of {args.rounds} interleaved "
             f"rounds. Regenerate: `python3 bench/peer/onednn_versions.py build/release/bench OUT.md "
             f"--rounds {args.rounds}`.", "",
             "| benchmark (rows, in, out) | 2.6 | 3.2 | 3.2 / 2.6 (median of rounds) | per round |",
             "|---|---:|---:|---:|---|"]
    for name, a in rates["2.6"].items():
        b = rates["3.2"].get(name, [])
        if len(a) != len(b):
            continue
        ratios = [y / x for x, y in zip(a, b)]
        lines.append(f"| {name} | {statistics.median(a):.0f} | {statistics.median(b):.0f} | "
                     f"{statistics.median(ratios):.2f}x | {' '.join(f'{x:.2f}' for x in ratios)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
