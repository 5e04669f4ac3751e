#!/usr/bin/env python3
"""The paper's video headline on this CPU: UMT-B (ViT-B/16 over T frames of
224x224, tubelet 1: T x 196 tokens, random weights), repshift's variants and
PyTorch side by side, interleaved rounds, one invocation:

    python3 bench/peer/video_vs_pytorch.py build/release/bench/model_timing [OUT.md]
        [--frames 8,12,16] [--batches 1,2] [--rounds 3] [--seconds 2] [--rss 1024,2048,4096,8192,16384] [--plot OUT.png]
        [--variants flash,map,pruned,attn_pruned] [--avx2] [--bf16]

Variants (repshift, model_timing umt_b): (a) unpruned, flash attention;
(a') unpruned on the plain attention path that writes the N x N map (the
paper's non-flash baseline); (b) the paper's pruning: r = 0.2 at blocks 0,
1, 2 by the MLP-site L2 shift; (c) the paper's baseline: the same schedule
ranked by attention received (mean over heads and queries) on the map path.
(d) PyTorch: the same UMT-B written with F.scaled_dot_product_attention,
unpruned and with (b)'s pruning written the obvious PyTorch way (score,
torch.topk, sort, gather). Reports (b)/(a), (b)/(a'), (b)/(c), (b)/(d
pruned) and (b)/(d unpruned). (a') and (c) run their GEMMs through
cpu::sgemm (OpenBLAS, or oneDNN's sgemm where OpenBLAS's core is generic
for the CPU), OpenBLAS at its best: an OPENBLAS_CORETYPE that pins an AVX2 core on an AVX-512
CPU is dropped for our process (openblas_core()). With --rss, the peak RSS of one UMT-B
attention (12 heads x 64) on the flash and the map path from 1k to 16k
tokens, each in a fresh process, as a table and a PNG. --variants runs
a subset of ours (PyTorch's two always run). --avx2 holds both sides to
what an AVX2-only machine runs, as bench/peer/vs_pytorch.py --avx2 does
(pass build/release/bench/model_timing_avx2). --bf16 (CPUs with
AVX512-BF16 or AMX) adds (a) and (b) in bfloat16 (rs::DenseMath::Bf16:
bf16 dense layers, and attention on AMX tiles where the CPU has AMX, f32
accumulation) against (d) under torch.autocast("cpu", torch.bfloat16),
in a second table.
"""
import datetime
import math
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import peer_venv  # noqa: E402
from vs_pytorch import AVX2_OURS, AVX2_TORCH, autocast_bf16, rate  # noqa: E402  (the image peers' timing loop)

THREADS = 2
DROPS = {0: 0.2, 1: 0.2, 2: 0.2}  # the paper's UMT retrieval setting


def option(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    if f"--{name}" in sys.argv:
        return sys.argv[sys.argv.index(f"--{name}") + 1]
    return default


def cpu_flags():
    """The CPU's feature flags, as /proc/cpuinfo lists them."""
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])


def openblas_core():
    """(env, note): the OpenBLAS kernels the map-path variants (a') and (c)
    run on, at their best. An environment may pin OPENBLAS_CORETYPE to an
    AVX2 core (this workplace's sessions inherit OPENBLAS_CORETYPE=Haswell);
    on a CPU with AVX-512 that runs the baselines' GEMMs on the AVX2 kernels
    (on the Zen 5 machine, 177-213 GFLOP/s at sgemm instead of 320-387, and
    the map attention 1.2-1.3x slower) and flatters (b). There the variable
    is dropped for our process and OpenBLAS picks its own core."""
    flags = set(cpu_flags())
    avx512 = flags.issuperset(("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"))
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    drop = avx512 and pinned is not None and pinned.lower() in ("haswell", "zen", "sandybridge", "nehalem")
    code = "import ctypes; l = ctypes.CDLL('libopenblas.so.0'); l.openblas_get_corename.restype = ctypes.c_char_p; " \
           "print(l.openblas_get_corename().decode())"
    env = {k: v for k, v in os.environ.items() if not (drop and k == "OPENBLAS_CORETYPE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    core = out.stdout.strip() if out.returncode == 0 else "unknown"
    note = f"OpenBLAS core {core}" + (f" (OPENBLAS_CORETYPE={pinned} dropped on this AVX-512 CPU)" if drop else "")
    return env, note


def build_umt(torch, frames, dim=768, depth=12, heads=12, mlp=3072, classes=400):
    """UMT-B in plain PyTorch: Conv3d tubelet-1 patches, sinusoid positions,
    pre-norm blocks with SDPA, token-mean fc_norm head."""
    F = torch.nn.functional
    tokens = frames * 196
    pos = torch.arange(tokens, dtype=torch.float64)[:, None]
    j = torch.arange(dim)[None, :]
    angle = pos / torch.pow(10000.0, 2 * (j // 2) / dim)
    pos_embed = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle)).float()

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6), torch.nn.LayerNorm(dim, eps=1e-6)
            self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
            self.fc1, self.fc2 = torch.nn.Linear(dim, mlp), torch.nn.Linear(mlp, dim)

        def attention(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))

        def forward(self, x):
            x1 = x + self.attention(self.norm1(x))
            m = self.fc2(F.gelu(self.fc1(self.norm2(x1))))
            return x1 + m, (m - x1).norm(dim=-1)

    class UMT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = torch.nn.Conv3d(3, dim, (1, 16, 16), (1, 16, 16))
            self.blocks = torch.nn.ModuleList(Block() for _ in range(depth))
            self.fc_norm, self.head = torch.nn.LayerNorm(dim, eps=1e-6), torch.nn.Linear(dim, classes)

        def forward(self, video, drops=None):
            x = self.patch(video).flatten(2).transpose(1, 2) + pos_embed
            for i, blk in enumerate(self.blocks):
                x, score = blk(x)
                if drops and i in drops:
                    keep = x.shape[1] - math.floor(drops[i] * x.shape[1])
                    idx = torch.topk(score, keep, dim=1).indices.sort(dim=1).values
                    x = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            return self.head(self.fc_norm(x.mean(1)))

    return UMT().eval()


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("--"):
        sys.exit(__doc__)
    peer_venv.ensure("torch", "matplotlib")
    avx2 = "--avx2" in sys.argv
    if avx2:
        os.environ.update(AVX2_TORCH)  # read when torch loads and at its first GEMM
    import torch
    torch.set_num_threads(THREADS)
    binary = sys.argv[1]
    out_md = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else None
    frames_list = [int(v) for v in option("frames", "8,12,16").split(",")]
    batches = [int(v) for v in option("batches", "1,2").split(",")]
    rounds, seconds = int(option("rounds", "3")), float(option("seconds", "2"))
    rss_tokens = [int(v) for v in option("rss", "").split(",") if v]
    plot = option("plot", None)
    variants = option("variants", "flash,map,pruned,attn_pruned").split(",")
    bf16 = "--bf16" in sys.argv
    if bf16:
        variants += ["flash_bf16", "pruned_bf16"]
    blas_env, blas_note = openblas_core()
    env = dict(blas_env, OMP_NUM_THREADS=str(THREADS), **(AVX2_OURS if avx2 else {}))
    if avx2:
        blas_note = "OpenBLAS core Haswell (--avx2: both sides held to AVX2)"
    # Whose sgemm cpu::sgemm takes under that environment (oneDNN's where OpenBLAS's core is generic here).
    sgemm = subprocess.run([binary, "sgemm"], capture_output=True, text=True, env=env).stdout.strip() or "unknown"

    def ours(variant, batch, frames):
        out = subprocess.run([binary, "umt_b", str(batch), variant, str(seconds), str(frames)], check=True,
                             capture_output=True, text=True, env=env)
        return float(out.stdout)

    results = {}
    gen = torch.Generator().manual_seed(0)
    for r in range(rounds):
        for frames in frames_list:
            model = build_umt(torch, frames)
            for batch in batches:
                video = torch.randn(batch, 3, frames, 224, 224, generator=gen)
                row = {v: ours(v, batch, frames) for v in variants}
                row["torch"] = rate(torch, model, video, seconds)
                row["torch_pruned"] = rate(torch, lambda v: model(v, DROPS), video, seconds)
                if bf16:
                    row["torch_bf16"] = rate(torch, autocast_bf16(torch, model), video, seconds)
                    row["torch_pruned_bf16"] = rate(torch, autocast_bf16(torch, lambda v: model(v, DROPS)), video,
                                                    seconds)
                for k, v in row.items():
                    results.setdefault((frames, batch, k), []).append(v)
                print(f"round {r + 1}/{rounds} T={frames} b{batch}: " +
                      ", ".join(f"{k} {v:.3f}/s" for k, v in row.items()), flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    lines = [f"UMT-B video encoder (ViT-B/16, T frames x 196 tokens, random weights), repshift vs PyTorch "
             f"{torch.__version__} (SDPA), CPU, {THREADS} threads, {datetime.date.today()}; clips/s, medians of "
             f"{rounds} interleaved rounds, each a median over ~{seconds:.0f} s of forward passes. Pruned: r = 0.2 at "
             f"blocks 0, 1, 2 (the paper's UMT retrieval setting; 2352 -> 1882 -> 1506 -> 1205 tokens at T = 12). "
             f"(a') and (c) multiply through cpu::sgemm: {sgemm}; {blas_note}. "
             f"Regenerate: `python3 bench/peer/video_vs_pytorch.py build/release/bench/model_timing`.", "",
             "| T | tokens | batch | (a) flash | (a') map | (b) pruned | (c) attn-received pruned | (d) PyTorch | "
             "(d) PyTorch pruned | (b)/(a) | (b)/(a') | (b)/(c) | (b)/(d pruned) | (b)/(d) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for frames in frames_list:
        for batch in batches:
            g = lambda k: med.get((frames, batch, k), math.nan)  # nan: a variant --variants left out
            rate_of = lambda k: "-" if math.isnan(g(k)) else f"{g(k):.3f}"
            b = g("pruned")
            ratio = lambda k: "-" if math.isnan(b) or math.isnan(g(k)) else f"{b / g(k):.2f}x"
            lines.append(f"| {frames} | {frames * 196} | {batch} | " +
                         " | ".join(rate_of(k) for k in ("flash", "map", "pruned", "attn_pruned", "torch",
                                                         "torch_pruned")) + " | " +
                         " | ".join(ratio(k) for k in ("flash", "map", "attn_pruned", "torch_pruned", "torch")) + " |")

    if bf16:
        lines += ["", "bfloat16 (ours: rs::DenseMath::Bf16, f32 accumulation; PyTorch: torch.autocast(\"cpu\", "
                  "torch.bfloat16)), the same rounds:", "",
                  "| T | tokens | batch | (a) flash bf16 | (b) pruned bf16 | (d) PyTorch bf16 | (d) PyTorch pruned bf16 "
                  "| (b)/(a) | (b)/(d pruned) | (b)/(d) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for frames in frames_list:
            for batch in batches:
                g = lambda k: med[(frames, batch, k)]
                b = g("pruned_bf16")
                lines.append(f"| {frames} | {frames * 196} | {batch} | " +
                             " | ".join(f"{g(k):.3f}" for k in ("flash_bf16", "pruned_bf16", "torch_bf16",
                                                                "torch_pruned_bf16")) + " | " +
                             " | ".join(f"{b / g(k):.2f}x" for k in ("flash_bf16", "torch_pruned_bf16", "torch_bf16"))
                             + " |")

    if rss_tokens:
        rss = {}
        for n in rss_tokens:
            for path in ("flash", "map"):
                out = subprocess.run([binary, "attention_rss", str(n), path], capture_output=True, text=True, env=env)
                rss[(n, path)] = float(out.stdout) if out.returncode == 0 else float("nan")
                print(f"rss {n} {path}: {rss[(n, path)]:.0f} MiB", flush=True)
        lines += ["", "Peak RSS (VmHWM) of one UMT-B attention (12 heads x 64, batch 1, f32), each in a fresh "
                  "process (`model_timing attention_rss TOKENS flash|map`); inputs and output included; the map "
                  "path holds the 12 x N x N probabilities the attention-based baselines read.", "",
                  "| tokens | flash MiB | map MiB | map / flash |", "|---:|---:|---:|---:|"]
        for n in rss_tokens:
            f_, m_ = rss[(n, "flash")], rss[(n, "map")]
            lines.append(f"| {n} | {f_:.0f} | {m_:.0f} | {m_ / f_:.1f}x |")
        if plot:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(5.5, 3.6))
            ax.plot(rss_tokens, [rss[(n, "flash")] for n in rss_tokens], "o-", label="flash (repshift)")
            ax.plot(rss_tokens, [rss[(n, "map")] for n in rss_tokens], "s-", label="plain, writes the N x N map")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("tokens")
            ax.set_ylabel("peak RSS (MiB)")
            ax.set_title("One UMT-B attention layer, CPU")
            ax.legend()
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(plot, dpi=120)
    print("\n".join(lines))
    if out_md:
        with open(out_md, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
