#!/usr/bin/env python3
"""Regenerates the fidelity experiments (no fine-tuning) and their plot:

    python3 bench/fidelity/fidelity.py BUILD_DIR [OUT_DIR]

- digits ViT (data/digits_vit, trained by train_digits_vit.py): test accuracy
  for every Site x Importance at keep rates 0.9/0.7/0.5 (layers 1 and 3), and
  MLP-site L2 with Fuse and Merge instead of Prune;
- the video transformer on moving-digit clips (data/digit_clips, trained by
  train_digit_clips.py; 64 space-time tokens, no class token): the same
  table, with attention received standing in for CLS attention;
- all-MiniLM-L6-v2: cosine of pruned vs unpruned sentence embeddings and
  nearest-neighbour agreement (minilm_fidelity.py).
Writes OUT_DIR (default bench/results)/fidelity_{digits,clips,minilm}_DATE.md and
fidelity_DATE.png (quality vs keep rate, one panel per model and site, one
line per importance). Installs matplotlib if missing.
"""
import datetime
import os
import platform
import subprocess
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
import minilm_fidelity  # noqa: E402


def parse_rows(table):
    """Markdown rows -> {(site, importance): [(keep, first value column)]}."""
    lines = defaultdict(list)
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] in ("site", "-") or cells[0].startswith("---") or "%" in cells[1]:
            continue
        site, importance = cells[0], cells[1]
        if site.endswith("_update"):  # the residual-update reading: one more line in its site's panel
            site, importance = site[: -len("_update")], importance + " (update)"
        lines[(site, importance)].append((float(cells[2]), float(cells[3])))
    return lines


def baseline(table):
    for line in table.splitlines():
        if "| unpruned |" in line:
            return float(line.strip().strip("|").split("|")[3])
    raise ValueError("no unpruned row")


def plot(panels, path):
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--root-user-action=ignore", "matplotlib"],
                       check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = sorted({imp for _, _, table in panels for (_, imp) in parse_rows(table)})
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}  # one colour per policy
    fig, axes = plt.subplots(len(panels), 3, figsize=(13, 4 * len(panels)), squeeze=False)
    for row, (title, ylabel, table) in enumerate(panels):
        series, full = parse_rows(table), baseline(table)
        for col, site in enumerate(("attn", "mlp", "block")):
            ax = axes[row][col]
            for (s, importance), pts in sorted(series.items()):
                if s != site:
                    continue
                pts = sorted(pts + [(1.0, full)])
                style = "-o" if importance in ("l1", "l2", "cosine") else "--s"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=importance, color=colors[importance])
            ax.set_title(f"{title}: site = {site}")
            ax.set_xlabel("keep rate at each pruning layer")
            ax.set_ylabel(ylabel)
            ax.invert_xaxis()
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "bench", "results")
    today = datetime.date.today()
    digits = subprocess.run([os.path.join(build, "bench", "fidelity_digits"), os.path.join(ROOT, "data", "digits_vit")],
                            check=True, capture_output=True, text=True).stdout
    digits_header = (f"Digits ViT (scikit-learn 8x8 digits, 360 held-out images; 17 tokens, dim 64, depth 6; trained "
                     f"with PyTorch + timm by bench/fidelity/train_digits_vit.py), no fine-tuning; pruning at layers "
                     f"1 and 3 of 6 with the given keep rate k (each layer keeps N - floor((1 - k) N) of its N "
                     f"tokens, the paper's rule), CLS protected. Sites `attn_update` / `mlp_update` score the "
                     f"residual update D(x + F(x), x) instead of D(F(x), x). {platform.machine()} CPU, {today}. "
                     f"Regenerate: `python3 bench/fidelity/fidelity.py build/release`.\n\n")
    clips = subprocess.run([os.path.join(build, "bench", "fidelity_digits"), os.path.join(ROOT, "data", "digit_clips"),
                            "--clips"], check=True, capture_output=True, text=True).stdout
    clips_header = (f"Video transformer on digit clips (a scikit-learn digit moving over 8 frames of a 16x16 canvas, "
                    f"360 held-out clips; tubelet 2, patch 4: 64 space-time tokens, no class token, dim 64, depth 6; "
                    f"trained with PyTorch by bench/fidelity/train_digit_clips.py), no fine-tuning; pruning at layers "
                    f"1 and 3 of 6 with the given keep rate k (the paper's rule), nothing protected. "
                    f"`attn_received` ranks by the attention a token receives (mean over heads and queries), the "
                    f"attention-map baseline without a class token. {platform.machine()} CPU, {today}. "
                    f"Regenerate: `python3 bench/fidelity/fidelity.py build/release`.\n\n")
    minilm_header, minilm = minilm_fidelity.run(os.path.join(build, "bench", "fidelity_minilm"))
    os.makedirs(out_dir, exist_ok=True)
    for name, header, table in (("digits", digits_header, digits), ("clips", clips_header, clips),
                                ("minilm", minilm_header, minilm)):
        with open(os.path.join(out_dir, f"fidelity_{name}_{today}.md"), "w") as f:
            f.write(header + table)
        print(header + table)
    png = os.path.join(out_dir, f"fidelity_{today}.png")
    plot([("digits ViT", "test accuracy", digits), ("digit clips video", "test accuracy", clips),
          ("all-MiniLM-L6-v2", "cosine to unpruned embedding", minilm)], png)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
