#!/usr/bin/env python3
"""Turns a bench_ablation JSON run into a Markdown table and PNG plots.

    python3 bench/plot_ablation.py ablation.json OUT_DIR [TAG]

Writes OUT_DIR/ablation_TAG.md (images/s per backbone x site x importance x
compress x keep rate, medians over the run's repetitions, speedup over the
same backbone's unpruned model in the same run) and OUT_DIR/ablation_TAG.png (throughput vs keep rate, one panel
per backbone and site, one line per importance/compress policy: colour = importance, line
style = compress). Installs matplotlib if missing.
"""
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        run = json.load(f)
    rates = defaultdict(list)
    for b in run["benchmarks"]:
        if b.get("run_type") == "iteration":
            rates[b["label"]].append(b["images_per_s"])
    return run["context"], {k: statistics.median(v) for k, v in rates.items()}, max(len(v) for v in rates.values())


def main():
    if len(sys.argv) < 3 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    path, out_dir = sys.argv[1], sys.argv[2]
    tag = sys.argv[3] if len(sys.argv) > 3 else "cpu"
    ctx, med, reps = load(path)
    models = {"transformer": "DeiT-S", "ssm_scan": "Vim-T"}
    base = {b: med[f"{b}/unpruned"] for b in models if f"{b}/unpruned" in med}
    panels, policies, keeps = [], [], set()
    for label in med:
        parts = label.split("/")
        if parts[1] == "unpruned":
            continue
        backbone, site, imp, comp, keep = parts
        if (backbone, site) not in panels:
            panels.append((backbone, site))
        if (imp, comp) not in policies:
            policies.append((imp, comp))
        keeps.add(keep)
    keeps = sorted(keeps, reverse=True)
    # Interleaved runs arrive shuffled: list in the registry's order, which
    # bench_ablation writes into the context (older files: order of arrival).
    order = [n for n in ctx.get("policy_order", "").split(", ") if n]
    rank = lambda name: order.index(name) if name in order else len(order)
    panels.sort(key=lambda p: (rank(p[0]), rank(p[1])))
    policies.sort(key=lambda p: (rank(p[0]), rank(p[1])))

    os.makedirs(out_dir, exist_ok=True)
    unpruned = ", ".join(f"{models[b]} {v:.2f} img/s" for b, v in base.items())
    batch, executor = ctx.get("batch", "8"), ctx.get("executor", "CPU (f32)")
    lines = [f"{executor}, batch {batch}, random weights; DeiT-S (Transformer) prunes at blocks 0/3/6, Vim-T (SsmScan) at 0/6/12, "
             f"each with drop ratio 1 - keep rate (N - floor(r N) kept, the paper's rule); {ctx.get('host_name', '?')} ({ctx['num_cpus']} CPUs), {ctx['date']}, "
             f"medians of {reps} interleaved repetitions. Unpruned: {unpruned}. Speedup is over the same "
             f"backbone's unpruned model.", "",
             "| backbone | site | importance | compress | " +
             " | ".join(f"keep {k} img/s (speedup)" for k in keeps) + " |",
             "|---|---|---|---|" + "---:|" * len(keeps)]
    for backbone, site in panels:
        for imp, comp in policies:
            cells = []
            for k in keeps:
                v = med.get(f"{backbone}/{site}/{imp}/{comp}/{k}")
                cells.append("n/a" if v is None else f"{v:.2f} ({v / base[backbone]:.2f}x)")
            if any(c != "n/a" for c in cells):
                lines.append(f"| {models[backbone]} | {site} | {imp} | {comp} | " + " | ".join(cells) + " |")
    md = os.path.join(out_dir, f"ablation_{tag}.md")
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    try:
        import matplotlib
    except ImportError:
        # A machine without network (the lent GPU ones) keeps the table.
        pip = [sys.executable, "-m", "pip", "install", "-q", "--root-user-action=ignore", "--retries", "0",
               "--timeout", "10", "matplotlib"]
        if subprocess.run(pip, check=False).returncode != 0:
            print(f"\nwrote {md}; no plot: matplotlib is missing and could not be installed")
            return
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    importances = sorted({imp for imp, _ in policies}, key=rank)
    styles = {"prune": "-", "fuse": "--", "merge": ":"}
    for ax, (backbone, site) in zip(axes, panels):
        for imp, comp in policies:
            keyed = [f"{backbone}/{site}/{imp}/{comp}/{k}" for k in keeps]
            pts = [(1.0, base[backbone])] + [(float(k), med[key]) for k, key in zip(keeps, keyed) if key in med]
            if len(pts) > 1:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                        linestyle=styles.get(comp, "-."), color=f"C{importances.index(imp)}",
                        label=f"{imp}/{comp}")
        ax.set_title(f"{models[backbone]}: site = {site}")
        ax.set_xlabel("keep rate at each pruning layer")
        ax.set_ylabel(f"images / s (batch {batch})")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)  # the attention panel has every policy, cls_attn included
    fig.suptitle(f"repshift ablation sweep, {executor}, {ctx.get('host_name', '?')} ({ctx['num_cpus']} CPUs)")
    fig.tight_layout()
    png = os.path.join(out_dir, f"ablation_{tag}.png")
    fig.savefig(png, dpi=110)
    print(f"\nwrote {md} and {png}")


if __name__ == "__main__":
    main()
