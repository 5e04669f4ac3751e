#!/usr/bin/env python3
"""Trains the small video transformer used for the video fidelity and
conformance checks: clips of scikit-learn's 8x8 digits moving across a 16x16
canvas over 8 frames, labelled by the digit. Writes what the C++ side loads:

    data/digit_clips/model.safetensors     UMT-style names (models/video.hpp), f32
    data/digit_clips/test_set.safetensors  clips [N,1,8,16,16], labels [N],
                                           logits [N,10] from PyTorch (eval mode)

    python3 bench/fidelity/train_digit_clips.py [OUT_DIR]

Model (repshift::ViTConfig::digit_clips()): 8 frames, tubelet 2, patch 4:
4 tubes x 16 patches = 64 tokens, no class token, dim 64, depth 6, 4 heads,
MLP 128, VideoMAE's sinusoid positions, q/v biases, token-mean fc_norm
head. Digits split stratified 80/20 (seed 0); each test digit gets one
clip with its own random start and velocity (seed 1). A few minutes on 2
CPU cores.
"""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import peer_venv  # noqa: E402

peer_venv.ensure("torch", "sklearn")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

FRAMES, TUBELET, CANVAS, PATCH, DIM, DEPTH, HEADS, MLP, CLASSES = 8, 2, 16, 4, 64, 6, 4, 128, 10
EPOCHS, CLIPS_PER_DIGIT, BATCH, LR, WEIGHT_DECAY = 30, 2, 64, 2e-3, 0.05


def sinusoid_table(tokens, dim):
    pos = np.arange(tokens, dtype=np.float64)[:, None]
    j = np.arange(dim)[None, :]
    angle = pos / np.power(10000.0, 2 * (j // 2) / dim)
    return torch.from_numpy(np.where(j % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32))


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(DIM, 3 * DIM, bias=False)
        self.q_bias = torch.nn.Parameter(torch.zeros(DIM))
        self.v_bias = torch.nn.Parameter(torch.zeros(DIM))
        self.proj = torch.nn.Linear(DIM, DIM)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(DIM, MLP), torch.nn.Linear(MLP, DIM)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = torch.nn.LayerNorm(DIM, eps=1e-6), torch.nn.LayerNorm(DIM, eps=1e-6)
        self.attn, self.mlp = Attention(), Mlp()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv3d(1, DIM, (TUBELET, PATCH, PATCH), (TUBELET, PATCH, PATCH))

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VideoViT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        tokens = FRAMES // TUBELET * (CANVAS // PATCH) ** 2
        self.patch_embed = PatchEmbed()
        self.register_buffer("pos_embed", sinusoid_table(tokens, DIM), persistent=False)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(DEPTH))
        self.fc_norm = torch.nn.LayerNorm(DIM, eps=1e-6)
        self.head = torch.nn.Linear(DIM, CLASSES)

    def forward(self, clips):
        x = self.patch_embed(clips) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x.mean(1)))


def make_clips(images, gen):
    """One clip per image: the 8x8 digit at a random start, moving by a random
    velocity in {-1, 0, 1}^2 per frame (not both 0), kept on the canvas;
    background -1 (the images are scaled to [-1, 1])."""
    n = images.shape[0]
    clips = -np.ones((n, 1, FRAMES, CANVAS, CANVAS), dtype=np.float32)
    span = CANVAS - 8
    for i in range(n):
        while True:
            vy, vx = gen.integers(-1, 2, size=2)
            if vy or vx:
                break
        travel = FRAMES - 1
        y0 = gen.integers(travel if vy < 0 else 0, span - (travel if vy > 0 else 0) + 1)
        x0 = gen.integers(travel if vx < 0 else 0, span - (travel if vx > 0 else 0) + 1)
        for f in range(FRAMES):
            y, x = y0 + vy * f, x0 + vx * f
            clips[i, 0, f, y:y + 8, x:x + 8] = images[i]
    return clips


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "data",
                                                                 "digit_clips")
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0) * 2.0 - 1.0
    train_x, test_x, train_y, test_y = train_test_split(images, digits.target, test_size=0.2, random_state=0,
                                                        stratify=digits.target)
    test_clips = torch.from_numpy(make_clips(test_x, np.random.default_rng(1)))
    test_labels = torch.from_numpy(test_y.astype(np.int64))
    model = VideoViT()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * math.ceil(len(train_x) * CLIPS_PER_DIGIT / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    rng = np.random.default_rng(2)
    for epoch in range(EPOCHS):
        # Fresh trajectories every epoch: the model must read the digit, not a path.
        clips = torch.from_numpy(make_clips(np.repeat(train_x, CLIPS_PER_DIGIT, axis=0), rng))
        labels = torch.from_numpy(np.repeat(train_y, CLIPS_PER_DIGIT).astype(np.int64))
        model.train()
        perm = torch.randperm(len(clips))
        for s in range(0, len(clips), BATCH):
            idx = perm[s:s + BATCH]
            loss = F.cross_entropy(model(clips[idx]), labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(test_clips).argmax(1) == test_labels).float().mean().item()
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {loss.item():.3f}, test accuracy {acc:.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        logits = model(test_clips)
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, "model.safetensors"))
    save_file({"clips": test_clips.contiguous(), "labels": test_labels.float(), "logits": logits.contiguous()},
              os.path.join(out_dir, "test_set.safetensors"))
    print(f"test accuracy {(logits.argmax(1) == test_labels).float().mean().item():.4f} on {len(test_labels)} clips")


if __name__ == "__main__":
    main()
