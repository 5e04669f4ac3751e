#!/usr/bin/env python3
"""The torch package against plain PyTorch, side by side in one run: timm's
DeiT-S / DeiT-B (random weights) at batch 1 / 8 / 64, four variants,
interleaved round by round, medians, 2 threads:

  unpruned          timm's own forward
  pruned, PyTorch   the paper's schedule (r = 0.2 at blocks 0, 3, 6) written the
                    obvious PyTorch way: blocks in PyTorch, ||MLP(x') - x'||, topk, gather
  pruned, ops       the same blocks in PyTorch, pruning through torch.ops.repshift
                    (shift_score, select_top, gather_tokens)
  pruned, fused     repshift.patch.timm: every block through torch.ops.repshift.block_forward,
                    the last one on the class token alone past attention (head_only)
  fused, all rows   the same with head_only=False: the last block computes every token

    python3 bench/peer/torch_package_bench.py [OUT.md] [--rounds 3] [--batches 1,8,64] [--models deit_s,deit_b]

Needs torch, timm and the installed repshift package (tests/run_all.sh builds
it into build/peer-venv).
"""
import argparse
import datetime
import os
import platform
import statistics
import time

import torch

import repshift

THREADS = 2


def plain_pruned(model, images, schedule, use_ops):
    ratios = dict(schedule)
    x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
    for i, blk in enumerate(model.blocks):
        if i not in ratios:
            x = blk(x)
            continue
        x1 = x + blk.attn(blk.norm1(x))
        m = blk.mlp(blk.norm2(x1))
        y = x1 + m
        keep = repshift.keep_count(x.shape[1], ratios[i], 1)
        if use_ops:
            idx = torch.ops.repshift.select_top(torch.ops.repshift.shift_score(x1, m, "l2"), keep, 1)
            x = torch.ops.repshift.gather_tokens(y, idx)
        else:
            score = (m - x1).norm(dim=-1)
            idx = torch.topk(score[:, 1:], keep - 1, dim=1).indices.sort(dim=1).values + 1
            idx = torch.cat([torch.zeros_like(idx[:, :1]), idx], dim=1)
            x = torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, y.shape[-1]))
    return model.forward_head(model.norm(x))


def rate(fn, batch, seconds=3.0):
    fn()  # warm-up
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main():
    import timm

    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--models", default="deit_s,deit_b")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    names = {"deit_s": "deit_small_patch16_224", "deit_b": "deit_base_patch16_224"}
    schedule = repshift.paper_schedule()
    rows = []
    with torch.no_grad():
        for name in args.models.split(","):
            plain = timm.create_model(names[name], pretrained=False).eval()
            fused = timm.create_model(names[name], pretrained=False).eval()
            fused.load_state_dict(plain.state_dict())
            repshift.patch.timm(fused, schedule)
            all_rows = timm.create_model(names[name], pretrained=False).eval()
            all_rows.load_state_dict(plain.state_dict())
            repshift.patch.timm(all_rows, schedule, head_only=False)
            for batch in map(int, args.batches.split(",")):
                images = torch.randn(batch, 3, 224, 224)
                variants = {
                    "unpruned": lambda: plain(images),
                    "pruned, PyTorch": lambda: plain_pruned(plain, images, schedule, False),
                    "pruned, ops": lambda: plain_pruned(plain, images, schedule, True),
                    "pruned, fused": lambda: fused(images),
                    "fused, all rows": lambda: all_rows(images),
                }
                rates = {k: [] for k in variants}
                for _ in range(args.rounds):
                    for k, fn in variants.items():
                        rates[k].append(rate(fn, batch, args.seconds))
                med = {k: statistics.median(v) for k, v in rates.items()}
                rows.append((name, batch, med))
                print(name, batch, {k: round(v, 2) for k, v in med.items()}, flush=True)
    lines = [f"repshift torch package vs plain PyTorch {torch.__version__} (timm {timm.__version__}), "
             f"{platform.machine()} CPU, {THREADS} threads, {datetime.date.today()}; medians of {args.rounds} "
             f"interleaved rounds, each a median over ~{args.seconds:.0f} s. Pruned: the paper's schedule "
             f"(r = 0.2 at blocks 0, 3, 6), MLP-site L2. Regenerate: `python3 bench/peer/torch_package_bench.py`.", "",
             "| model | batch | unpruned img/s | pruned, PyTorch | pruned, ops | pruned, fused | fused, all rows "
             "| fused / PyTorch pruned | fused / all rows |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, batch, m in rows:
        lines.append(f"| {name} | {batch} | {m['unpruned']:.2f} | {m['pruned, PyTorch']:.2f} | {m['pruned, ops']:.2f} "
                     f"| {m['pruned, fused']:.2f} | {m['fused, all rows']:.2f} "
                     f"| {m['pruned, fused'] / m['pruned, PyTorch']:.2f}x "
                     f"| {m['pruned, fused'] / m['fused, all rows']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
