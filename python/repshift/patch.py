"""Patch timm and Hugging Face models in place, as ToMe's `tome.patch.timm` does.

    model = timm.create_model("deit_small_patch16_224")
    repshift.patch.timm(model, schedule=repshift.paper_schedule())   # r = 0.2 at blocks 0, 3, 6
    logits = model(images)
    model._repshift_source   # per pruning layer: int64 [B, kept], the original positions kept
    repshift.patch.unpatch(model)

A schedule is a list of (0-based layer, drop ratio r): a layer that receives
N tokens keeps N - floor(r N) of them (the paper's rule), never a
protected prefix token (CLS, and any register tokens).
"""
import types

import torch

from ._policies import EXTRA_TOKENS, TRACKS_SIZES
from .schedule import _integer, keep_count, kept_cu_seqlens

def _ratios(schedule, depth):
    ratios = {}
    for layer, ratio in schedule:
        # 1.5 would pass the range test and match no block: nothing pruned, silently.
        layer = _integer(layer, "schedule layer")
        if not 0 <= layer < depth:
            raise ValueError(f"schedule layer {layer} is outside [0, depth = {depth})")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"schedule drop ratio {ratio} at layer {layer} must be in [0, 1]")
        if layer in ratios:
            raise ValueError(f"schedule has two steps for layer {layer}")
        ratios[layer] = ratio
    return ratios


def _check_names(site, metric, compress):
    """The library's own table decides (ValueError with its message)."""
    torch.ops.repshift.check_policies(site, metric, compress)


# ---- timm -------------------------------------------------------------------

def _check_reachable(model, ratios, depth, protect, compress):
    """A schedule the compress policy cannot realise (Merge removes at most
    half of the unprotected tokens per layer) is refused here, naming the
    layer, rather than at the first forward: the library's own check
    (PruneSchedule::check_reachable). A model whose token count
    depends on the image (dynamic_img_size) is checked there instead."""
    embed = getattr(model, "patch_embed", None)
    patches = getattr(embed, "num_patches", None)
    # timm keeps dynamic_img_size on the model; the patch embedding then takes any size (strict_img_size False).
    if not isinstance(patches, int) or getattr(model, "dynamic_img_size", False) or \
            not getattr(embed, "strict_img_size", True):
        return
    layers = sorted(ratios)
    try:
        torch.ops.repshift.check_schedule_reachable(compress, patches + protect, protect, depth, layers,
                                                    [float(ratios[l]) for l in layers])
    except ValueError as e:  # named after the call the user made; sample 0 is the model's image
        raise ValueError(f"repshift.patch.timm: {e}") from None


def _check_timm_block(i, block):
    """Exactly timm's pre-norm vision_transformer.Block with plain Attention and
    Mlp, in the configuration the fused op computes; anything else is refused
    by name (a look-alike such as ResPostBlock would run the wrong maths)."""
    # vision_transformer names all three in every timm 1.x (Attention moved
    # to timm.layers only in 1.0.16).
    from timm.models.vision_transformer import Attention, Block, Mlp

    where = f"repshift.patch.timm: block {i}"
    for what, obj, cls in (("block", block, Block), ("block.attn", getattr(block, "attn", None), Attention),
                           ("block.mlp", getattr(block, "mlp", None), Mlp)):
        if type(obj) is not cls:
            raise ValueError(f"{where}: {what} is {type(obj).__module__}.{type(obj).__name__}, "
                             f"not {cls.__module__}.{cls.__name__}, which the fused block computes")
    attn, mlp = block.attn, block.mlp
    plain = torch.nn.Identity
    problems = []
    norms = (block.norm1, block.norm2)
    if not all(isinstance(n, torch.nn.LayerNorm) and n.weight is not None and n.bias is not None for n in norms):
        problems.append("norm1 / norm2 must be LayerNorm with weight and bias")
    elif block.norm1.eps != block.norm2.eps:
        problems.append(f"norm1.eps = {block.norm1.eps} and norm2.eps = {block.norm2.eps} must be equal")
    for name in ("ls1", "ls2", "drop_path1", "drop_path2"):
        if not isinstance(getattr(block, name), plain):
            problems.append(f"{name} must be Identity (no LayerScale or drop path)")
    for name in ("q_norm", "k_norm", "norm"):
        if not isinstance(getattr(attn, name), plain):
            problems.append(f"attn.{name} must be Identity")
    if getattr(attn, "gate", None) is not None:  # timm >= 1.0.28
        problems.append("gated attention is not supported")
    dim = attn.qkv.in_features
    if attn.num_heads * attn.head_dim != dim or attn.proj.out_features != dim:
        problems.append(f"attention width {attn.num_heads} x {attn.head_dim} and output {attn.proj.out_features} "
                        f"must equal the block's width {dim}")
    elif attn.scale != attn.head_dim ** -0.5:
        problems.append(f"attn.scale = {attn.scale} must be head_dim^-1/2 = {attn.head_dim ** -0.5}")
    for name, linear in (("attn.proj", attn.proj), ("mlp.fc1", mlp.fc1), ("mlp.fc2", mlp.fc2)):
        if linear.bias is None:
            problems.append(f"{name} must have a bias")
    if not isinstance(mlp.act, torch.nn.GELU) or mlp.act.approximate != "none":
        problems.append("mlp.act must be exact GELU")
    if not isinstance(mlp.norm, plain):
        problems.append("mlp.norm must be Identity")
    if problems:
        raise ValueError(f"{where} cannot run fused: " + "; ".join(problems))


def _timm_block_forward(self, x, attn_mask=None, is_causal=False):
    if attn_mask is not None or is_causal:
        raise ValueError("repshift.patch.timm: patched blocks take no attention mask")
    cfg = self._repshift
    info = cfg["info"]
    n = x.shape[1]
    if cfg["layer"] == 0:  # a new forward, whichever method runs the blocks (forward, forward_features, ...)
        info["source"].clear()  # cleared, not replaced: model._repshift_source is this list
        info["positions"] = info["sizes"] = None
    elif info["positions"] is not None and tuple(info["positions"].shape) != (x.shape[0], n):
        raise ValueError(f"repshift.patch.timm: block {cfg['layer']} got {tuple(x.shape[:2])} tokens, but the blocks "
                         f"before it left {tuple(info['positions'].shape)}: run the blocks in order from block 0")
    ratio = cfg["ratio"]
    keep = keep_count(n, ratio, cfg["protect"]) if ratio is not None else n
    # Inside model(x) (_timm_forward), the last block feeds a head that reads the class token alone.
    first_token_only = cfg["last"] and info["head_only"] and keep == n
    attn, mlp = self.attn, self.mlp
    out, idx, _, sizes = torch.ops.repshift.block_forward(
        x, self.norm1.weight, self.norm1.bias, attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias,
        self.norm2.weight, self.norm2.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
        attn.num_heads, self.norm1.eps, cfg["site"], cfg["metric"], cfg["compress"], keep, cfg["protect"], False,
        cfg["layer"], info["sizes"] if TRACKS_SIZES[cfg["compress"]] else None, first_token_only)
    if keep < n:
        positions = info["positions"]
        if positions is None:
            positions = torch.arange(n, device=x.device).expand(x.shape[0], n)
        kept = torch.gather(positions, 1, idx)
        info["source"].append(kept)
        extra = EXTRA_TOKENS[cfg["compress"]]
        if extra:  # a fused token stands for no single position
            kept = torch.cat([kept, kept.new_full((kept.shape[0], extra), -1)], dim=1)
        info["positions"] = kept
        if TRACKS_SIZES[cfg["compress"]]:
            info["sizes"] = sizes
    return out


_HEAD_METHODS = ("forward", "forward_features", "forward_head", "pool")


def _runs_timm_forward(model):
    """Whether model(x) runs timm's own VisionTransformer.forward through
    its own forward_features, pool and forward_head (a distilled DeiT
    overrides them: its head reads token 1 too), none of them replaced on
    the instance (a user's wrapper is left alone)."""
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(model, VisionTransformer) and all(
        getattr(type(model), m, None) is getattr(VisionTransformer, m, None) and m not in vars(model)
        for m in _HEAD_METHODS)


def _timm_forward(self, *args, **kwargs):
    """timm's forward; where its head reads the class token alone (asked on
    every call: reset_classifier can change the pooling after patching),
    the last block computes that row alone past attention."""
    info = self._repshift["info"]
    info["head_only"] = getattr(self, "attn_pool", None) is None and getattr(self, "global_pool", None) == "token"
    try:
        return type(self).forward(self, *args, **kwargs)
    finally:
        info["head_only"] = False


def timm(model, schedule, site="mlp", metric="l2", compress="prune", head_only=True):
    """Patches a timm VisionTransformer / DeiT in place: every block runs
    through torch.ops.repshift.block_forward, pruning per `schedule`.

    head_only: where model(x) is timm's own forward and its head reads the
    class token alone (global_pool 'token', no attention pool, checked at
    each call), the last block, if it prunes nothing, runs the projection
    and MLP on that row alone, as the C++ model does: the logits are the
    same, and that block returns [B, 1, C] inside model(x) (forward hooks
    on it see that). forward_features and direct block calls always
    compute every token."""
    # Everything is checked before a patched model is touched: a refused
    # call leaves the model as it was, patched or not.
    _check_names(site, metric, compress)
    if not isinstance(head_only, bool):
        raise TypeError(f"repshift.patch.timm: head_only must be True or False, not {head_only!r}")
    blocks = list(model.blocks)
    ratios = _ratios(schedule, len(blocks))
    protect = int(getattr(model, "num_prefix_tokens", 1))
    for i, block in enumerate(blocks):
        _check_timm_block(i, block)
    _check_reachable(model, ratios, len(blocks), protect, compress)
    unpatch(model)
    info = {"source": [], "positions": None, "sizes": None, "head_only": False}
    for i, block in enumerate(blocks):
        block._repshift = {"layer": i, "ratio": ratios.get(i), "site": site, "metric": metric, "compress": compress,
                           "protect": protect, "info": info, "last": i == len(blocks) - 1}
        block.forward = types.MethodType(_timm_block_forward, block)
    wraps_forward = head_only and _runs_timm_forward(model)
    model._repshift = {"kind": "timm", "blocks": blocks, "info": info, "wraps_forward": wraps_forward}
    if wraps_forward:
        model.forward = types.MethodType(_timm_forward, model)
    model._repshift_source = info["source"]
    return model


# ---- Hugging Face BERT ----------------------------------------------------------

def _bert_layer_weights(layer):
    """The twelve tensors of block_forward_varlen for one BertLayer (post-norm)."""
    a, o = layer.attention, layer.output
    return (a.output.LayerNorm.weight, a.output.LayerNorm.bias, layer._repshift_qkv_w, layer._repshift_qkv_b,
            a.output.dense.weight, a.output.dense.bias, o.LayerNorm.weight, o.LayerNorm.bias,
            layer.intermediate.dense.weight, layer.intermediate.dense.bias, o.dense.weight, o.dense.bias)


def _check_bert_config(config):
    """The fused block is a bidirectional post-norm encoder layer with exact
    (erf) GELU: another activation, a decoder or cross-attention is refused
    by name rather than run as something else."""
    problems = []
    if config.hidden_act != "gelu":
        problems.append(f"hidden_act = {config.hidden_act!r} (the fused block computes 'gelu', the exact erf form)")
    for name in ("is_decoder", "add_cross_attention"):
        if getattr(config, name, False):
            problems.append(f"{name} = True (the fused block is a bidirectional encoder layer)")
    position = getattr(config, "position_embedding_type", None)
    if position not in (None, "absolute"):
        problems.append(f"position_embedding_type = {position!r} (relative positions change the attention)")
    if problems:
        raise ValueError("repshift.patch.hf_bert: the model cannot run fused: " + "; ".join(problems))


def _bert_forward(model, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                  return_dict=None, **kwargs):
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    cfg = model._repshift
    if input_ids is None:
        raise ValueError("repshift.patch.hf_bert: the patched model takes input_ids")
    # No attention maps, hidden states of every layer, cache or cross-attention
    # come out of the fused blocks: asking for one is refused, not ignored.
    # use_cache is not a request: an encoder has no cache (HF's BertModel
    # turns it off for encoders itself).
    kwargs.pop("use_cache", None)
    asked = sorted(name for name, value in kwargs.items() if value is not None and value is not False)
    if asked:
        raise ValueError(f"repshift.patch.hf_bert: the patched model does not take {', '.join(asked)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.bool()
    hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
    # Pack the valid tokens (FlashAttention's varlen layout): no work for padding,
    # and each sentence keeps its own count at every pruning layer.
    lengths = mask.sum(1).to(torch.int32).cpu()  # the host plans the packed layout
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"repshift.patch.hf_bert: attention_mask row {empty[0]} has no valid token; every "
                         "sentence needs one (its [CLS])")
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, 0)
    x = hidden[mask]
    source, positions = [], None
    for i, layer in enumerate(model.encoder.layer):
        ratio = cfg["ratios"].get(i)
        lens = (cu[1:] - cu[:-1]).tolist()
        kept_cu = kept_cu_seqlens(cu, ratio, 1) if ratio is not None else cu.clone()
        kept = kept_cu.tolist()
        w = _bert_layer_weights(layer)
        x, idx, _, out_cu = torch.ops.repshift.block_forward_varlen(
            x, cu, kept_cu, *w, cfg["heads"], cfg["eps"], cfg["site"], cfg["metric"], cfg["compress"], 1, True, i)
        if ratio is not None and kept[-1] < cu[-1].item():
            if positions is None:
                positions = [torch.arange(n, device=x.device) for n in lens]
            kept_positions = [positions[b][idx[kept[b]:kept[b + 1]]] for b in range(len(lens))]
            source.append((kept_cu, torch.cat(kept_positions)))
            # Fuse appends a token (position -1) to each sentence that dropped some.
            extra = EXTRA_TOKENS[cfg["compress"]]
            positions = [torch.cat([p, p.new_full((extra,), -1)]) if extra and len(p) < lens[b] else p
                         for b, p in enumerate(kept_positions)]
        cu = out_cu
    lens = (cu[1:] - cu[:-1]).tolist()
    width = max(lens)
    out = x.new_zeros((len(lens), width, x.shape[1]))
    new_mask = torch.zeros((len(lens), width), dtype=attention_mask.dtype, device=attention_mask.device)
    for b, n in enumerate(lens):
        out[b, :n] = x[cu[b]:cu[b + 1]]
        new_mask[b, :n] = 1
    model._repshift_attention_mask = new_mask
    model._repshift_source = source
    pooled = model.pooler(out) if model.pooler is not None else None
    if return_dict is None:
        return_dict = getattr(model.config, "return_dict", True) is not False
    if not return_dict:
        return (out, pooled) if pooled is not None else (out,)
    return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=out, pooler_output=pooled)


def hf_bert(model, schedule, site="mlp", metric="l2", compress="prune"):
    """Patches a Hugging Face BertModel in place: the valid tokens of each
    sentence (per attention_mask) are packed, every layer runs through
    torch.ops.repshift.block_forward_varlen with per-sentence keep counts,
    and the output is padded again. `model._repshift_attention_mask` is the
    mask of the returned (pruned) last_hidden_state, for mean pooling;
    `model._repshift_source` lists, per pruning layer, (kept_cu_seqlens,
    original positions kept, packed). Patch after loading the weights: the
    fused q/k/v weights are built here."""
    _check_names(site, metric, compress)
    _check_bert_config(model.config)
    if TRACKS_SIZES[compress]:
        offered = ", ".join(name for name, sizes in TRACKS_SIZES.items() if not sizes)
        raise ValueError(f"repshift.patch.hf_bert: compress = '{compress}' carries token sizes, which the packed "
                         f"sentences do not (offered: {offered})")
    layers = list(model.encoder.layer)
    ratios = _ratios(schedule, len(layers))
    unpatch(model)
    for layer in layers:
        s = layer.attention.self
        with torch.no_grad():
            # Buffers (not saved): model.to(device / dtype) moves them with the weights.
            layer.register_buffer("_repshift_qkv_w", torch.cat([s.query.weight, s.key.weight, s.value.weight]),
                                  persistent=False)
            layer.register_buffer("_repshift_qkv_b", torch.cat([s.query.bias, s.key.bias, s.value.bias]),
                                  persistent=False)
    model._repshift = {"kind": "hf_bert", "ratios": ratios, "site": site, "metric": metric, "compress": compress,
                       "heads": model.config.num_attention_heads, "eps": model.config.layer_norm_eps}
    model.forward = types.MethodType(_bert_forward, model)
    return model


def unpatch(model):
    """Restores a model patched by timm() or hf_bert()."""
    torch.ops.repshift.clear_weight_cache()  # timm() and hf_bert() start here too
    state = getattr(model, "_repshift", None)
    if state is None:
        return model
    if state["kind"] == "timm":
        for block in state["blocks"]:
            del block.forward
            del block._repshift
        del model._repshift_source
        if state["wraps_forward"]:
            del model.forward
    else:
        for layer in model.encoder.layer:
            del layer._repshift_qkv_w, layer._repshift_qkv_b
        for name in ("_repshift_source", "_repshift_attention_mask"):
            if hasattr(model, name):
                delattr(model, name)
        del model.forward
    del model._repshift
    return model
