"""repshift for PyTorch: token compression by representation shift.

    import repshift
    torch.ops.repshift.shift_score(before, after, "l2")        # float32 [B, N]
    torch.ops.repshift.select_top(scores, keep, protect)       # int64 [B, keep], ascending, ties to the lower index
    torch.ops.repshift.gather_tokens(x, idx)                   # [B, keep, C]
    torch.ops.repshift.select_top_varlen / gather_tokens_varlen  (packed, FlashAttention's cu_seqlens)
    torch.ops.repshift.block_forward(...)                      # a whole timm ViT block, fused

    repshift.patch.timm(model, schedule=repshift.paper_schedule())  # patch a timm ViT / DeiT in place
    repshift.patch.hf_bert(model, schedule=[(1, 0.3), (3, 0.3)])    # patch a Hugging Face BertModel
    repshift.patch.unpatch(model)
    repshift.clear_weight_cache()   # after editing weights through .data or a numpy / DLPack alias

The kernels are the C++ library's (include/repshift), compiled against the
installed torch by `pip install .`.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (registers torch.ops.repshift.*)
from . import _meta  # noqa: F401  (fake kernels for torch.compile)
from . import patch
from .schedule import keep_count, kept_cu_seqlens, paper_schedule

__all__ = ["patch", "keep_count", "kept_cu_seqlens", "paper_schedule", "clear_weight_cache"]


def clear_weight_cache():
    """Drops every packed weight copy the CPU block ops keep (oneDNN builds),
    in every thread, before its next call. An in-place update of a weight
    (an optimizer step, `w[5:9].zero_()`) is seen by its version counter;
    an edit through `w.data`, or through a numpy or DLPack alias of its
    storage, is not: call this after one."""
    torch.ops.repshift.clear_weight_cache()
