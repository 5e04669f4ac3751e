#!/usr/bin/env python3
"""Trains the small ViT used for the accuracy-fidelity experiments on
scikit-learn's bundled digits (1797 8x8 grey images, 10 classes) with
PyTorch + timm, and writes what the C++ side loads:

    data/digits_vit/model.safetensors     timm VisionTransformer weights (timm names, f32)
    data/digits_vit/test_set.safetensors  images [N,1,8,8] (normalised as trained),
                                          labels [N], logits [N,10] from PyTorch (eval mode)

    python3 bench/fidelity/train_digits_vit.py [OUT_DIR]

Model: image 8, patch 2 (16 patches + CLS = 17 tokens), dim 64, depth 6,
4 heads, MLP 128, LayerNorm eps 1e-6 (repshift::ViTConfig::digits()).
Split: stratified 80/20, seed 0. A few minutes on 2 CPU cores.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import peer_venv  # noqa: E402

peer_venv.ensure("torch", "timm", "sklearn")

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

EPOCHS, BATCH, LR, WEIGHT_DECAY = 200, 64, 1e-3, 0.05


def make_model():
    return timm.models.vision_transformer.VisionTransformer(
        img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=6, num_heads=4, mlp_ratio=2.0)


def shift_augment(x, gen):
    """Random translation by up to one pixel (zero fill): 1437 images are few."""
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if dy == 1:
        x[:, :, 0] = -1
    elif dy == -1:
        x[:, :, -1] = -1
    if dx == 1:
        x[:, :, :, 0] = -1
    elif dx == -1:
        x[:, :, :, -1] = -1
    return x


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "data",
                                                                 "digits_vit")
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0) * 2.0 - 1.0  # [0, 16] -> [-1, 1]
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=0.2, stratify=digits.target,
                                                        random_state=0)
    x_train = torch.from_numpy(x_train).unsqueeze(1)
    x_test = torch.from_numpy(x_test).unsqueeze(1)
    y_train = torch.from_numpy(y_train).long()
    y_test = torch.from_numpy(y_test).long()

    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * ((len(x_train) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(0)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            loss = loss_fn(model(shift_augment(x_train[idx].clone(), gen)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 20 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(x_test).argmax(1) == y_test).float().mean().item()
            print(f"epoch {epoch + 1}/{EPOCHS}: loss {loss.item():.3f}, test accuracy {acc:.4f}", flush=True)

    model.eval()
    with torch.no_grad():
        logits = model(x_test)
    acc = (logits.argmax(1) == y_test).float().mean().item()
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, "model.safetensors"))
    save_file({"images": x_test.contiguous(), "labels": y_test.float(), "logits": logits.contiguous()},
              os.path.join(out_dir, "test_set.safetensors"))
    print(f"PyTorch {torch.__version__} + timm {timm.__version__}: test accuracy {acc:.4f} "
          f"({int(round(acc * len(y_test)))}/{len(y_test)}); wrote {out_dir}")


if __name__ == "__main__":
    main()
