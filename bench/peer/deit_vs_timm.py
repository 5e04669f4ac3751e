#!/usr/bin/env python3
"""repshift's DeiT vs PyTorch + timm's DeiT on the same CPU, same threads,
interleaved rounds, one invocation:

    python3 bench/peer/deit_vs_timm.py build/release/bench/deit_timing [OUT.md]

PyTorch side: timm's deit_small/base_patch16_224 (random weights, no
download), unpruned, and with the paper's schedule written the obvious
PyTorch way: at layers 1, 4, 7 score s = ||MLP(LN2 x') - x'||, keep CLS +
torch.topk of the rest (floor(0.8 N) in all), gather, continue; attention is
timm's, i.e. F.scaled_dot_product_attention. torch and timm live in their
own venv (build/peer-venv, ~5 GB), created on first use.
"""
import datetime
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, "..", "..", "build", "peer-venv")
CONFIGS = [("deit_s", 1), ("deit_s", 8), ("deit_s", 64), ("deit_b", 1), ("deit_b", 8)]
ROUNDS, SECONDS, THREADS = 3, 2.0, 2


def ensure_torch():
    try:
        import torch  # noqa: F401
        import timm  # noqa: F401
    except ImportError:
        python = os.path.join(VENV, "bin", "python")
        if os.path.abspath(sys.executable) == os.path.abspath(python):
            sys.exit("torch/timm still missing inside the venv")
        if not os.path.exists(python):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
            subprocess.run([python, "-m", "pip", "install", "-q", "torch", "timm"], check=True)
        os.execv(python, [python] + sys.argv)


def torch_rate(model, images, pruned, torch, seconds):
    import time

    def forward(x):
        x = model.patch_embed(x)
        x = model._pos_embed(x)
        for i, blk in enumerate(model.blocks):
            x1 = x + blk.attn(blk.norm1(x))
            m = blk.mlp(blk.norm2(x1))
            y = x1 + m
            if pruned and i in (1, 4, 7):
                n = y.shape[1]
                keep = int(0.8 * n + 1e-9)
                score = (m - x1).norm(dim=-1)[:, 1:]
                idx = torch.topk(score, keep - 1, dim=1).indices.sort(dim=1).values + 1
                idx = torch.cat([torch.zeros_like(idx[:, :1]), idx], dim=1)
                y = torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, y.shape[-1]))
            x = y
        return model.head(model.norm(x)[:, 0])

    with torch.inference_mode():
        forward(images)
        rates, start = [], time.perf_counter()
        while len(rates) < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            forward(images)
            rates.append(images.shape[0] / (time.perf_counter() - t0))
    return statistics.median(rates)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ensure_torch()
    import timm
    import torch
    torch.set_num_threads(THREADS)
    binary, out_md = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    names = {"deit_s": "deit_small_patch16_224", "deit_b": "deit_base_patch16_224"}
    models = {k: timm.create_model(v, pretrained=False).eval() for k, v in names.items()}
    results = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    for r in range(ROUNDS):
        for model_name, batch in CONFIGS:
            images = torch.randn(batch, 3, 224, 224)
            for pruned in (False, True):
                mode = "pruned" if pruned else "unpruned"
                ours = float(subprocess.run([binary, model_name, str(batch), mode, str(SECONDS)], check=True,
                                            capture_output=True, text=True, env=env).stdout)
                theirs = torch_rate(models[model_name], images, pruned, torch, SECONDS)
                results.setdefault((model_name, batch, mode), []).append((ours, theirs))
                print(f"round {r + 1}/{ROUNDS} {model_name} b{batch} {mode}: ours {ours:.2f} img/s, "
                      f"torch {theirs:.2f} img/s", flush=True)
    lines = [f"repshift vs PyTorch {torch.__version__} + timm {timm.__version__}, CPU, {THREADS} threads, "
             f"{datetime.date.today()}; medians of {ROUNDS} interleaved rounds, each a median over ~{SECONDS:.0f} s "
             f"of forward passes. Pruned = paper schedule (keep 0.8 at layers 1, 4, 7, MLP-site L2).", "",
             "| model | batch | mode | repshift img/s | PyTorch img/s | ratio |", "|---|---:|---|---:|---:|---:|"]
    for (model_name, batch, mode), pairs in results.items():
        ours = statistics.median(p[0] for p in pairs)
        theirs = statistics.median(p[1] for p in pairs)
        lines.append(f"| {model_name} | {batch} | {mode} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x |")
    print("\n".join(lines))
    if out_md:
        with open(out_md, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
