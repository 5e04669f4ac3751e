"""rs::ResNet against torchvision's resnet50 with the same weights (random,
with BatchNorm statistics and affines far from the identity, so the folding
at load is exercised), in both layouts: logits within 1e-4 (of the largest
logit), unpruned and with the paper's line pruning (8 + 8 lines after
stage 1, 4 + 4 after stage 2) written here in plain PyTorch, and the same
kept rows and columns. Runs the C++ model through
build/release/tests/conformance/resnet_classify (built by the README's
test command before this suite runs)."""
import pathlib
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

torchvision = pytest.importorskip("torchvision")

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = ROOT / "build" / "release" / "tests" / "conformance" / "resnet_classify"
PAPER = {1: 8, 2: 4}  # stage (1-based) -> rows and columns removed after it


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.copy_(1 + 0.1 * torch.randn_like(m.weight))
                m.bias.normal_(0, 0.1)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for block in layer:
                block.bn3.weight.mul_(0.3)  # keeps the residual stream O(1) over 16 blocks
        model.fc.weight.normal_(0, 0.01)
        model.fc.bias.normal_(0, 0.01)
    path = tmp_path_factory.mktemp("resnet") / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.double(), path


def best_lines(score, keep):
    """Per sample: the `keep` best lines (ties to the lower index), ascending."""
    return torch.stack([torch.tensor(sorted(sorted(range(len(s)), key=lambda i: (-s[i], i))[:keep]))
                        for s in score.tolist()])


@torch.no_grad()
def reference(model, images, lines):
    """torchvision's forward; after a pruned stage's last block, the per-pixel
    L2 shift ||y - x|| over channels (y after the ReLU, x the block's input),
    averaged per row and per column of the same map, keeps the best lines."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    kept = []
    for stage, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4), start=1):
        for block in layer[:-1]:
            x = block(x)
        y = layer[-1](x)
        if stage in lines:
            shift = (y - x).norm(dim=1)  # [B, H, W]
            keep = y.shape[-1] - lines[stage]
            rows, cols = best_lines(shift.mean(2), keep), best_lines(shift.mean(1), keep)
            y = torch.stack([y[b][:, rows[b]][:, :, cols[b]] for b in range(y.shape[0])])
            kept.append((rows, cols))
        x = y
    return model.fc(torch.flatten(model.avgpool(x), 1)), kept


def run_library(tmp_path, model_path, images, layout, lines):
    images_path, out_path = tmp_path / "images.safetensors", tmp_path / "out.safetensors"
    save_file({"images": images.float().contiguous()}, str(images_path))
    args = [str(BINARY), str(model_path), str(images_path), str(out_path), "--image", str(images.shape[-1]),
            "--layout", layout]
    for stage, n in lines.items():
        args += ["--lines", f"{stage}:{n}"]
    subprocess.run(args, check=True, capture_output=True)
    return load_file(str(out_path))


@pytest.mark.skipif(not BINARY.exists(), reason="build/release/tests/conformance/resnet_classify is not built")
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("schedule", ["unpruned", "paper"])
def test_resnet50_matches_torchvision(tmp_path, resnet, layout, schedule):
    model, model_path = resnet
    lines = PAPER if schedule == "paper" else {}
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want, want_kept = reference(model, images, lines)
    try:
        got = run_library(tmp_path, model_path, images, layout, lines)
    except subprocess.CalledProcessError as e:
        if layout == "nhwc" and b"needs oneDNN" in e.stderr:  # a build without libdnnl-dev
            pytest.skip(e.stderr.decode().strip())
        raise
    err = ((got["logits"].double() - want).abs().max() / want.abs().max()).item()
    assert err < 1e-4, err
    assert set(got) == {"logits", *(f"{side}.{k}" for k in range(len(lines)) for side in ("rows", "cols"))}
    for k, (rows, cols) in enumerate(want_kept):
        assert torch.equal(got[f"rows.{k}"].long(), rows)
        assert torch.equal(got[f"cols.{k}"].long(), cols)


@pytest.mark.skipif(not BINARY.exists(), reason="build/release/tests/conformance/resnet_classify is not built")
def test_a_negative_running_variance_is_refused_by_name(tmp_path, resnet):
    """Folded into the conv, a variance below zero would give NaN weights
    (sqrt of a negative): the loader names the tensor and the entry."""
    _, model_path = resnet
    state = load_file(str(model_path))
    state["layer2.1.bn2.running_var"][3] = -0.25
    bad = tmp_path / "negative_var.safetensors"
    save_file(state, str(bad))
    images = torch.zeros(1, 3, 64, 64)
    with pytest.raises(subprocess.CalledProcessError) as e:
        run_library(tmp_path, bad, images, "nchw", {})
    assert b"layer2.1.bn2.running_var[3] = -0.25 must be >= 0" in e.value.stderr
