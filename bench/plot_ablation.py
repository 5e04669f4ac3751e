#!/usr/bin/env python3
"""Turns a bench_ablation JSON run into a Markdown table and PNG plots.

    python3 bench/plot_ablation.py ablation.json OUT_DIR [TAG]

Writes OUT_DIR/ablation_TAG.md (images/s per site x importance x compress x keep rate,
medians over the run's repetitions, speedup over the unpruned model of the
same run) and OUT_DIR/ablation_TAG.png (throughput vs keep rate, one panel
per site, one line per importance/compress policy: colour = importance, line
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
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, out_dir = sys.argv[1], sys.argv[2]
    tag = sys.argv[3] if len(sys.argv) > 3 else "cpu"
    ctx, med, reps = load(path)
    base = med["unpruned"]
    sites, policies, keeps = [], [], set()
    for label in med:
        if label == "unpruned":
            continue
        site, imp, comp, keep = label.split("/")
        if site not in sites:
            sites.append(site)
        if (imp, comp) not in policies:
            policies.append((imp, comp))
        keeps.add(keep)
    keeps = sorted(keeps, reverse=True)
    # Interleaved runs arrive shuffled: list in the sweep's own order.
    order = ["attn", "mlp", "block", "l2", "l1", "cosine", "norm", "random", "cls_attn", "prune", "fuse", "merge"]
    rank = lambda name: order.index(name) if name in order else len(order)
    sites.sort(key=rank)
    policies.sort(key=lambda p: (rank(p[0]), rank(p[1])))

    os.makedirs(out_dir, exist_ok=True)
    lines = [f"DeiT-S, batch 8, random weights, pruning at layers 1/4/7 with the given keep rate; "
             f"{ctx.get('host_name', '?')} ({ctx['num_cpus']} CPUs), {ctx['date']}, medians of {reps} "
             f"interleaved repetitions. Unpruned: {base:.2f} img/s.", "",
             "| site | importance | compress | " + " | ".join(f"keep {k} img/s (speedup)" for k in keeps) + " |",
             "|---|---|---|" + "---:|" * len(keeps)]
    for site in sites:
        for imp, comp in policies:
            cells = []
            for k in keeps:
                v = med.get(f"{site}/{imp}/{comp}/{k}")
                cells.append("n/a" if v is None else f"{v:.2f} ({v / base:.2f}x)")
            if any(c != "n/a" for c in cells):
                lines.append(f"| {site} | {imp} | {comp} | " + " | ".join(cells) + " |")
    md = os.path.join(out_dir, f"ablation_{tag}.md")
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--root-user-action=ignore", "matplotlib"],
                       check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sites), figsize=(4.2 * len(sites), 3.6), sharey=True)
    importances = sorted({imp for imp, _ in policies}, key=rank)
    styles = {"prune": "-", "fuse": "--", "merge": ":"}
    for ax, site in zip(axes, sites):
        for imp, comp in policies:
            keyed = [f"{site}/{imp}/{comp}/{k}" for k in keeps]
            pts = [(1.0, base)] + [(float(k), med[key]) for k, key in zip(keeps, keyed) if key in med]
            if len(pts) > 1:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                        linestyle=styles.get(comp, "-."), color=f"C{importances.index(imp)}",
                        label=f"{imp}/{comp}")
        ax.set_title(f"site = {site}")
        ax.set_xlabel("keep rate at layers 1, 4, 7")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("images / s (DeiT-S, batch 8)")
    axes[0].legend(fontsize=7, ncol=2)  # the attention panel has every policy, cls_attn included
    fig.suptitle(f"repshift ablation sweep, CPU ({ctx['num_cpus']} threads)")
    fig.tight_layout()
    png = os.path.join(out_dir, f"ablation_{tag}.png")
    fig.savefig(png, dpi=110)
    print(f"\nwrote {md} and {png}")


if __name__ == "__main__":
    main()
