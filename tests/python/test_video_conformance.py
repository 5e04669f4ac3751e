"""rs::VideoTransformer against a plain-PyTorch UMT-style model
(video_reference.py) with random weights under the documented tensor names:
logits within 1e-4 (of the largest logit), unpruned and with the paper's video schedules, and the
same kept tokens. Runs the C++ model through
build/release/tests/conformance/video_classify (built by the README's test
command before this suite runs)."""
import pathlib
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

from video_reference import VideoReference

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = ROOT / "build" / "release" / "tests" / "conformance" / "video_classify"

# (frames, tubelet, image, patch, dim, depth, heads, mlp, classes): tubelet 1
# and 2, token counts that are not multiples of the attention tiles.
CONFIGS = [
    (4, 2, 32, 8, 48, 3, 3, 96, 7),    # 2 tubes x 16 = 32 tokens
    (6, 1, 40, 8, 32, 4, 2, 64, 5),    # 6 frames x 25 = 150 tokens
]
SCHEDULES = {
    "unpruned": {},
    "retrieval": {0: 0.2, 1: 0.2, 2: 0.2},   # the paper's UMT retrieval setting
    "qa": "every",                           # r = 0.1 at every block
}


def run_library(tmp_path, cfg, weights, clips, drops):
    frames, tubelet, image, patch, dim, depth, heads, mlp, classes = cfg
    model_path, clips_path, out_path = tmp_path / "model.safetensors", tmp_path / "clips.safetensors", tmp_path / "out.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(model_path))
    save_file({"clips": clips.contiguous()}, str(clips_path))
    args = [str(BINARY), str(model_path), str(clips_path), str(out_path), "--frames", str(frames),
            "--tubelet", str(tubelet), "--image", str(image), "--patch", str(patch), "--dim", str(dim),
            "--depth", str(depth), "--heads", str(heads), "--mlp", str(mlp), "--classes", str(classes)]
    for layer, ratio in drops.items():
        args += ["--drop", f"{layer}:{ratio}"]
    subprocess.run(args, check=True, capture_output=True)
    return load_file(str(out_path))


@pytest.mark.skipif(not BINARY.exists(), reason="build/release/tests/conformance/video_classify is not built")
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"T{c[0]}t{c[1]}")
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_video_transformer_matches_pytorch(tmp_path, cfg, schedule):
    frames, tubelet, image, patch, dim, depth, heads, mlp, classes = cfg
    drops = SCHEDULES[schedule]
    if drops == "every":
        drops = {layer: 0.1 for layer in range(depth)}
    reference = VideoReference(frames, tubelet, image, patch, 3, dim, depth, heads, mlp, classes)
    weights = reference.random_weights(seed=frames * 10 + depth)
    clips = torch.randn(3, 3, frames, image, image, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_logits, want_kept = reference(clips, drops)
    got = run_library(tmp_path, cfg, weights, clips, drops)
    err = ((got["logits"] - want_logits).abs().max() / want_logits.abs().max()).item()
    assert err < 1e-4, f"max error relative to the largest logit: {err:.3g}"
    pruned = sorted(layer for layer, r in drops.items() if r > 0)
    assert sorted(int(k.split(".")[1]) for k in got if k.startswith("kept.")) == pruned
    for layer, want in zip(pruned, want_kept):
        assert torch.equal(got[f"kept.{layer}"].to(torch.int64), want), f"kept tokens differ at block {layer}"
