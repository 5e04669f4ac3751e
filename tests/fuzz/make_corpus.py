#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus: valid safetensors images (F32/F16/BF16,
empty tensors, metadata, a whole tiny ViT under timm's names), a few
near-misses, and some of them in the target's header form (header text,
NUL, data). Deterministic; run by tests/fuzz/run_fuzz.sh when the corpus
folder is empty.

    python3 tests/fuzz/make_corpus.py OUT_DIR
"""
import json
import os
import struct
import sys


def image(tensors, metadata=None):
    text, data = header_and_data(tensors, metadata)
    return struct.pack("<Q", len(text)) + text + data


def header_form(tensors, metadata=None):
    """The fuzz target's second reading: header text, a NUL, then the data."""
    text, data = header_and_data(tensors, metadata)
    return text + b"\0" + data


def header_and_data(tensors, metadata):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return text, data


def f32(values):
    return b"".join(struct.pack("<f", v) for v in values)


def vit_tensors():
    # The fuzz target's ViT: image 4, patch 2, 1 channel, dim 4, depth 1, heads 2, mlp 8, 2 classes.
    C, H, P = 4, 8, 2
    shapes = {"patch_embed.proj.weight": [C, 1, P, P], "patch_embed.proj.bias": [C], "cls_token": [1, 1, C],
              "pos_embed": [1, 5, C], "norm.weight": [C], "norm.bias": [C], "head.weight": [2, C], "head.bias": [2]}
    for p, shape in {"norm1.weight": [C], "norm1.bias": [C], "attn.qkv.weight": [3 * C, C], "attn.qkv.bias": [3 * C],
                     "attn.proj.weight": [C, C], "attn.proj.bias": [C], "norm2.weight": [C], "norm2.bias": [C],
                     "mlp.fc1.weight": [H, C], "mlp.fc1.bias": [H], "mlp.fc2.weight": [C, H], "mlp.fc2.bias": [C]}.items():
        shapes["blocks.0." + p] = shape
    out = {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        n = 1
        for d in shape:
            n *= d
        out[name] = ("F32", shape, f32([(i + k) % 7 / 7.0 for k in range(n)]))
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        "f32": image({"a": ("F32", [2], f32([1.5, -2.0]))}),
        "dtypes": image({"h": ("F16", [1], b"\x00\xc0"), "b": ("BF16", [], b"\x40\x40"),
                         "i": ("I32", [1], b"\x01\x00\x00\x00")}, {"format": "pt"}),
        "empty": image({"e": ("F32", [0, 3], b""), "x": ("F32", [1], f32([3.0]))}),
        "vit": image(vit_tensors()),
        "overlap": image({"a": ("F32", [1], f32([1.0]))})[:-2],
        "bad_json": struct.pack("<Q", 5) + b"{\"a\":",
        "header_f32": header_form({"a": ("F32", [2], f32([1.5, -2.0]))}, {"format": "pt"}),
        "header_empty": header_form({"e": ("F32", [0, 3], b""), "x": ("BF16", [1], b"\x40\x40")}),
        "header_vit": header_form(vit_tensors()),
        # A byte count that overflows 64 bits (once undefined behaviour in the message).
        "header_overflow": b'{"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}\0',
    }
    for name, blob in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()
