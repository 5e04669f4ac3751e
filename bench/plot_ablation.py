#!/usr/bin/env python3
"""Turns a bench_ablation JSON run into a Markdown table and PNG plots.

    python3 bench/plot_ablation.py ablation.json OUT_DIR [TAG]

Writes OUT_DIR/ablation_TAG.md (images/s per site x importance x keep rate,
medians over the run's repetitions, speedup over the unpruned model of the
same run) and OUT_DIR/ablation_TAG.png (throughput vs keep rate, one panel
per site, one line per importance). Installs matplotlib if it is missing.
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
    sites, importances, keeps = [], [], set()
    for label in med:
        if label == "unpruned":
            continue
        site, imp, keep = label.split("/")
        if site not in sites:
            sites.append(site)
        if imp not in importances:
            importances.append(imp)
        keeps.add(keep)
    keeps = sorted(keeps, reverse=True)

    os.makedirs(out_dir, exist_ok=True)
    lines = [f"DeiT-S, batch 8, random weights, pruning at layers 1/4/7 with the given keep rate; "
             f"{ctx.get('host_name', '?')} ({ctx['num_cpus']} CPUs), {ctx['date']}, medians of {reps} "
             f"interleaved repetitions. Unpruned: {base:.2f} img/s.", "",
             "| site | importance | " + " | ".join(f"keep {k} img/s (speedup)" for k in keeps) + " |",
             "|---|---|" + "---:|" * len(keeps)]
    for site in sites:
        for imp in importances:
            cells = []
            for k in keeps:
                v = med.get(f"{site}/{imp}/{k}")
                cells.append("n/a" if v is None else f"{v:.2f} ({v / base:.2f}x)")
            if any(c != "n/a" for c in cells):
                lines.append(f"| {site} | {imp} | " + " | ".join(cells) + " |")
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
    for ax, site in zip(axes, sites):
        for imp in importances:
            pts = [(1.0, base)] + [(float(k), med[f"{site}/{imp}/{k}"]) for k in keeps if f"{site}/{imp}/{k}" in med]
            if len(pts) > 1:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=imp)
        ax.set_title(f"site = {site}")
        ax.set_xlabel("keep rate at layers 1, 4, 7")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("images / s (DeiT-S, batch 8)")
    axes[-1].legend(fontsize=8)
    fig.suptitle(f"repshift ablation sweep, CPU ({ctx['num_cpus']} threads)")
    fig.tight_layout()
    png = os.path.join(out_dir, f"ablation_{tag}.png")
    fig.savefig(png, dpi=110)
    print(f"\nwrote {md} and {png}")


if __name__ == "__main__":
    main()
