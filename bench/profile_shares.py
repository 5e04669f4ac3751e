#!/usr/bin/env python3
"""Where a DeiT forward spends its time on the CPU: perf samples of
model_timing, bucketed into GEMM (kernel, zeroing C, packing), attention,
epilogues, select/gather, thread synchronisation and the rest.

    python3 bench/profile_shares.py build/release/bench [OUT.md]
        [--model deit_s] [--batches 1,8] [--seconds 6]

Runs `model_timing MODEL BATCH unpruned|pruned SECONDS` under `perf record`
for every batch, both ways, once on this machine's native build and, where
the machine has AVX-512, once on model_timing_avx2 (x86-64-v3) with
OPENBLAS_CORETYPE=Haswell and REPSHIFT_MAX_CPU_ISA=avx2 (and oneDNN's
ONEDNN_MAX_CPU_ISA=AVX2), so that our kernels and the libraries' all run
their AVX2 code: the profile of an AVX2-only machine of this kind, taken
on this one. Needs `perf` (Debian's
linux-perf) and permission to sample (perf_event_paranoid <= 2, or root).
"""
import datetime
import os
import re
import subprocess
import sys
import tempfile

# First match wins; a symbol is matched together with its DSO ("dso sym").
SETUP = r"random|normal_distribution|mersenne|_M_gen_rand|logf"  # random weights: before the timed forwards
BUCKETS = [
    ("GEMM: oneDNN matmul (JIT code)", r"\[JIT\]|libdnnl"),
    ("GEMM: OpenBLAS kernel", r"openblas.*sgemm_kernel|openblas.*gemm_.*kernel"),
    ("GEMM: OpenBLAS zeroing C (sgemm_beta)", r"openblas.*beta"),
    ("GEMM: OpenBLAS packing", r"openblas.*copy"),
    ("GEMM: OpenBLAS driver", r"openblas"),
    ("attention", r"flash|gemm_tile|softmax|attention"),
    ("thread sync (libgomp) and the OS", r"libgomp|kernel\.kallsyms"),
    ("epilogues (bias, GELU, residual + score, LayerNorm)", r"residual|layer_norm|layernorm|gelu|epilogue|bias|rms_norm"),
    ("select / gather", r"select|gather|top|kept|token_scores|merge|fuse"),
    ("patch embedding, head, other", r".*"),
]
LINE = re.compile(r"^\s*([\d.]+)%\s+(.*?)\s+\[(.)\]\s+(.*)$")  # the DSO may hold spaces ("[JIT] tid 42")


def option(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def profile(binary, args, env):
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-q", "-F", "2000", "-o", data, binary] + args, env=env, check=True,
                       stdout=subprocess.PIPE)
        rate = None
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-q"],
                                check=True, capture_output=True, text=True).stdout
    shares = {name: 0.0 for name, _ in BUCKETS}
    for line in report.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(4)
        key = f"{dso} {sym}"
        if re.search(SETUP, key):
            continue
        for name, pattern in BUCKETS:
            if re.search(pattern, key, re.IGNORECASE):
                shares[name] += pct
                break
    total = sum(shares.values()) or 1.0
    return {name: 100.0 * v / total for name, v in shares.items()}, rate


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    bench_dir = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else None
    model = option("model", "deit_s")
    batches = [int(b) for b in option("batches", "1,8").split(",")]
    seconds = option("seconds", "6")
    has_avx512 = "avx512f" in open("/proc/cpuinfo").read()
    native = "AVX-512" if has_avx512 else "AVX2-only machine"
    isas = [(native, os.path.join(bench_dir, "model_timing"), {})]
    avx2 = os.path.join(bench_dir, "model_timing_avx2")
    if has_avx512 and os.path.exists(avx2):  # an AVX2-only machine's native build is the AVX2 profile
        isas.append(("AVX2", avx2, {"OPENBLAS_CORETYPE": "Haswell", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                      "REPSHIFT_MAX_CPU_ISA": "avx2"}))
    columns = []
    for isa, binary, extra in isas:
        for batch in batches:
            for mode in ("unpruned", "pruned"):
                env = dict(os.environ, OMP_NUM_THREADS="2", **extra)
                shares, _ = profile(binary, [model, str(batch), mode, seconds], env)
                columns.append((f"{isa} b{batch} {mode}", shares))
                print(columns[-1][0], {k: round(v, 1) for k, v in shares.items()}, flush=True)
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    where = (f"AVX2: model_timing_avx2 (x86-64-v3) with OPENBLAS_CORETYPE=Haswell, ONEDNN_MAX_CPU_ISA=AVX2 "
             f"and REPSHIFT_MAX_CPU_ISA=avx2, "
             f"what an AVX2-only machine runs." if len(isas) > 1 else
             "A machine without AVX-512: the native build is the AVX2 code." if not has_avx512 else "")
    lines = [
        f"Share of samples (%), `perf record -F 2000` of `model_timing {model} BATCH unpruned|pruned {seconds}`, "
        f"2 OpenMP threads, {cpu}, {datetime.date.today()}. {where} The random weight set-up before "
        f"the timed forwards is left out and the rest scaled to 100. "
        f"Regenerate: `python3 bench/profile_shares.py build/release/bench`.",
        "",
        "| where | " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, _ in BUCKETS:
        if all(c[1][name] == 0.0 for c in columns):
            continue  # e.g. OpenBLAS's rows where oneDNN runs the dense layers
        lines.append(f"| {name} | " + " | ".join(f"{c[1][name]:.1f}" for c in columns) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
