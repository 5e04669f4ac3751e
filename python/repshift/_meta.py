"""Fake (meta) kernels: output shapes and dtypes without running anything,
so torch.compile(fullgraph=True) traces models that call the ops."""
import torch

from ._policies import EXTRA_TOKENS, TRACKS_SIZES


@torch.library.register_fake("repshift::shift_score")
def _(before, after, metric):
    return before.new_empty(before.shape[:2], dtype=torch.float32)


@torch.library.register_fake("repshift::select_top")
def _(scores, keep, protect=0):
    return scores.new_empty((scores.shape[0], keep), dtype=torch.int64)


@torch.library.register_fake("repshift::gather_tokens")
def _(x, idx):
    return x.new_empty((x.shape[0], idx.shape[1], x.shape[2]))


@torch.library.register_fake("repshift::select_top_varlen")
def _(scores, cu_seqlens, kept_cu_seqlens, protect=0):
    kept = torch.library.get_ctx().new_dynamic_size()  # data-dependent: kept_cu_seqlens[-1]
    return scores.new_empty((kept,), dtype=torch.int64)


@torch.library.register_fake("repshift::gather_tokens_varlen")
def _(x, cu_seqlens, idx, kept_cu_seqlens):
    return x.new_empty((idx.shape[0], x.shape[1]))


@torch.library.register_fake("repshift::block_forward")
def _(x, norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b, heads, eps,
      site, importance, compress, keep, protect=1, post_norm=False, seed=0, sizes=None, first_token_only=False):
    b, n, c = x.shape
    if first_token_only:  # keep == n, or the op refuses
        return (x.new_empty((b, 1, c)), x.new_empty((b, 1), dtype=torch.int64), x.new_empty((b, 0), dtype=torch.float32),
                x.new_empty((0,), dtype=torch.float32))
    # An unknown name gets the shapes of prune here; the op itself refuses it.
    out_tokens = keep + EXTRA_TOKENS.get(compress, 0) if keep < n else keep
    kept_sizes = x.new_empty((b, keep) if TRACKS_SIZES.get(compress, False) and keep < n else (0,), dtype=torch.float32)
    return (x.new_empty((b, out_tokens, c)), x.new_empty((b, keep), dtype=torch.int64),
            x.new_empty((b, n), dtype=torch.float32), kept_sizes)


@torch.library.register_fake("repshift::block_forward_varlen")
def _(x, cu_seqlens, kept_cu_seqlens, norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b,
      fc2_w, fc2_b, heads, eps, site, importance, compress, protect=1, post_norm=False, seed=0):
    # Data-dependent: the kept rows (kept_cu_seqlens[-1]) and the output rows
    # (those plus the compress policy's extra token per sample that dropped some).
    ctx = torch.library.get_ctx()
    out_rows, kept = ctx.new_dynamic_size(), ctx.new_dynamic_size()
    return (x.new_empty((out_rows, x.shape[1])), x.new_empty((kept,), dtype=torch.int64),
            x.new_empty((x.shape[0],), dtype=torch.float32),
            cu_seqlens.new_empty(cu_seqlens.shape, dtype=torch.int32, device="cpu"))  # as the ops return it
