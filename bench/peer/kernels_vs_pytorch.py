#!/usr/bin/env python3
"""The two kernels a transformer forward spends its time in, repshift's
against PyTorch's, alone and side by side, f32 (or bf16), 2 threads,
interleaved rounds, one invocation:

    python3 bench/peer/kernels_vs_pytorch.py build/release/bench [OUT.md]
        [--tokens 1205,2352] [--linear 1205x768x3072,...] [--weights packed|stored] [--rounds 6] [--bf16]
        [--merge 1x2352x1882x768,8x197x158x384]

- Attention (12 heads x 64, batch 1, UMT-B's): BM_FlashAttention/<tokens>
  of bench_attention_long against F.scaled_dot_product_attention. Both
  count 4 N^2 d flops per head (Q K^T and P V). Of a UMT-B at T = 12 under
  video_retrieval(), 9 of the 12 layers attend over 1205 tokens.
- Dense layers (y = x W^T, W [out, in]): the oneDNN matmul that
  rs::cpu::DenseLayers runs on this CPU, from bench_linear_onednn, against
  F.linear without bias. 2 rows in out flops. With AVX-512 that is
  BM_OneDnnPacked (W reordered once into oneDNN's blocked format, brgemm),
  below it BM_OneDnnStored (W read as stored, oneDNN's sgemm); --weights
  packed|stored overrides the choice.

- --merge BATCHxTOKENSxKEEPxCHANNELS,... (f32 only; replaces the cases
  above): Compress = Merge's merge, BM_MergeTokens of bench_attention_long
  (cpu::merge_tokens) against the same merge in PyTorch as ToMe writes it
  (unit keys, one batched product of the merging A tokens' keys with B's,
  argmax, a size-weighted scatter_add), CLS protected. Both count the
  product's 2 r |B| channels flops per sample.

- --bf16 (CPUs with AVX512-BF16 or AMX): BM_FlashAttentionBf16 (AMX
  tiles where the CPU has them) against SDPA on bf16 q, k, v; and
  BM_DenseLayersBf16 (rs::cpu::DenseLayers under DenseMath::Bf16: f32 x
  rounded in the call, bias, f32 out; --linear shapes of DeiT-S at 197 and
  1576 rows or UMT-B at 1205 and 2352) against F.linear with bias on x, W
  already in bf16, as autocast runs it minus the cast of x.

Ours: Google Benchmark, --benchmark_min_time=0.3. PyTorch: the median of 7
timed calls after one untimed. Says how much of a model's lead over
PyTorch each kernel can give on this machine.
"""
import datetime
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import peer_venv  # noqa: E402
from video_vs_pytorch import cpu_flags, option  # noqa: E402

THREADS = 2
HEADS, HEAD_DIM = 12, 64
UMT_B_LINEAR = "1205x768x2304,1205x768x768,1205x768x3072,1205x3072x768"


def dense_weights():
    """Which of bench_linear_onednn's matmuls DenseLayers runs here: packed
    brgemm weights with AVX-512, W as stored below it (cpu/onednn_linear.hpp)."""
    chosen = option("weights", None)
    if chosen is None:
        chosen = "packed" if "avx512f" in cpu_flags() else "stored"
    if chosen not in ("packed", "stored"):
        sys.exit(f"--weights must be packed or stored, got {chosen!r}")
    return chosen


def google_benchmark(binary, name):
    out = subprocess.run([binary, f"--benchmark_filter=^{name}$", "--benchmark_min_time=0.3"],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(THREADS))).stdout
    found = re.search(r"GFLOP/s=([0-9.]+)([kM]?)", out)  # Google Benchmark writes 1.2k for 1200
    if not found:
        sys.exit(f"{binary} printed no GFLOP/s for {name} (is it one of its benchmarks?)")
    return float(found.group(1)) * {"": 1.0, "k": 1e3, "M": 1e6}[found.group(2)]


def torch_rate(call, flops):
    call()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


def torch_merge(torch, x, keys, scores, sizes, keep, protect=1):
    """Compress = Merge as ToMe writes it in PyTorch (bipartite_soft_matching +
    merge_wavg), the r = N - keep least important A tokens merging into their
    most similar B token: the contract of cpu/merge_tokens.hpp."""
    batch, n, c = x.shape
    a_idx, b_idx = torch.arange(protect, n, 2), torch.arange(protect + 1, n, 2)
    norm = keys.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, keys / norm, torch.zeros_like(keys))  # a zero key: similarity 0
    # The selection rule: the lowest score merges first, NaN below everything
    # (ranked as -inf here), ties to the higher index.
    a_scores = scores[:, a_idx].nan_to_num(nan=-float("inf")).flip(1)
    merging = a_idx.flip(0)[a_scores.argsort(dim=1, stable=True)[:, :n - keep]]
    ck = keys.shape[-1]
    sim = torch.bmm(unit.gather(1, merging[..., None].expand(-1, -1, ck)), unit[:, b_idx].transpose(1, 2))
    dst = b_idx[sim.argmax(dim=-1)]
    weighted, total = x * sizes[..., None], sizes.clone()
    weighted.scatter_add_(1, dst[..., None].expand(-1, -1, c), weighted.gather(1, merging[..., None].expand(-1, -1, c)))
    total.scatter_add_(1, dst, sizes.gather(1, merging))
    survives = torch.ones(batch, n, dtype=torch.bool).scatter_(1, merging, False)
    return (weighted / total[..., None])[survives].view(batch, keep, c), total[survives].view(batch, keep)


def merge_cases(torch, bench_dir, spec):
    out = []
    for shape in (s for s in spec.split(",") if s):
        batch, n, keep, c = (int(v) for v in shape.split("x"))
        x, keys, scores = torch.randn(batch, n, c), torch.randn(batch, n, c), torch.randn(batch, n)
        sizes = torch.ones(batch, n)
        flops = 2.0 * batch * (n - keep) * ((n - 1) // 2) * c
        out.append((f"merge, {batch} x {n} -> {keep} tokens, {c} channels",
                    lambda a=(batch, n, keep, c): google_benchmark(
                        os.path.join(bench_dir, "bench_attention_long"),
                        "BM_MergeTokens/{}/{}/{}/{}/real_time".format(*a)),
                    lambda x=x, k=keys, s=scores, z=sizes, keep=keep, f=flops: torch_rate(
                        lambda: torch_merge(torch, x, k, s, z, keep), f)))
    return out


def cases(torch, bench_dir, weights, bf16):
    """(label, ours, theirs) for every case asked for: two callables giving GFLOP/s."""
    if option("merge", None):
        return merge_cases(torch, bench_dir, option("merge", None))
    F = torch.nn.functional
    dtype = torch.bfloat16 if bf16 else torch.float32
    attention = "BM_FlashAttentionBf16" if bf16 else "BM_FlashAttention"
    out = []
    for n in (int(t) for t in option("tokens", "1205,2352").split(",") if t):
        q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, dtype=dtype) for _ in range(3))
        out.append((f"attention, {n} tokens",
                    lambda n=n: google_benchmark(os.path.join(bench_dir, "bench_attention_long"),
                                                 f"{attention}/{n}/real_time"),
                    lambda n=n, q=q, k=k, v=v: torch_rate(lambda: F.scaled_dot_product_attention(q, k, v),
                                                          4.0 * HEADS * n * n * HEAD_DIM)))
    dense = "BM_DenseLayersBf16" if bf16 else {"packed": "BM_OneDnnPacked", "stored": "BM_OneDnnStored"}[weights]
    for shape in (s for s in option("linear", UMT_B_LINEAR).split(",") if s):
        rows, k_in, n_out = (int(x) for x in shape.split("x"))
        x, w = torch.randn(rows, k_in, dtype=dtype), torch.randn(n_out, k_in, dtype=dtype)
        bias = torch.randn(n_out, dtype=dtype) if bf16 else None  # DenseLayers adds one; the f32 rows have none
        out.append((f"linear, {rows} x {k_in} -> {n_out}",
                    lambda r=rows, i=k_in, o=n_out: google_benchmark(
                        os.path.join(bench_dir, "bench_linear_onednn"),
                        f"{dense}/rows:{r}/in:{i}/out:{o}/real_time"),
                    lambda x=x, w=w, b=bias, r=rows, i=k_in, o=n_out: torch_rate(lambda: F.linear(x, w, b),
                                                                                 2.0 * r * i * o)))
    return out


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("--"):
        sys.exit(__doc__)
    peer_venv.ensure("torch")
    import torch
    torch.set_num_threads(THREADS)
    bench_dir = sys.argv[1]
    out_path = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else None
    rounds = int(option("rounds", "6"))

    weights = dense_weights()
    bf16 = "--bf16" in sys.argv
    todo = cases(torch, bench_dir, weights, bf16)
    rates = {label: ([], []) for label, _, _ in todo}
    with torch.inference_mode():
        for r in range(rounds):  # alternate who goes first, so drift hits both
            for label, ours, theirs in todo:
                first, second = (ours, theirs) if r % 2 == 0 else (theirs, ours)
                a, b = first(), second()
                rates[label][0].append(a if r % 2 == 0 else b)
                rates[label][1].append(b if r % 2 == 0 else a)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)

    lines = [f"# CPU kernels alone: repshift vs PyTorch ({datetime.date.today()})", "",
             f"`python3 bench/peer/kernels_vs_pytorch.py {' '.join(sys.argv[1:])}`", "",
             f"{'bf16' if bf16 else 'f32'}, {THREADS} threads, {rounds} interleaved rounds; torch "
             f"{torch.__version__} ({torch.backends.cpu.get_cpu_capability()}). GFLOP/s, medians. " +
             ("Merge: cpu::merge_tokens vs the same merge in PyTorch (ToMe's algorithm), GFLOP/s of the "
              "matching product (2 r |B| channels per sample)." if option("merge", None) else
              f"Attention: {HEADS} heads x {HEAD_DIM}, batch 1, flash vs SDPA. Linear: y = x W^T, " +
              ("rs::cpu::DenseLayers (bf16, bias) vs F.linear on bf16 x, W and bias." if bf16 else
               f"oneDNN matmul ({weights} weights) vs F.linear.")), "",
             "| case | ours | PyTorch | ours / PyTorch | per round |", "|---|---:|---:|---:|---|"]
    for label, _, _ in todo:
        a, b = rates[label]
        ratios = [x / y for x, y in zip(a, b)]
        lines.append(f"| {label} | {statistics.median(a):.1f} | {statistics.median(b):.1f} | "
                     f"{statistics.median(ratios):.2f}x | {' '.join(f'{x:.2f}' for x in ratios)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
