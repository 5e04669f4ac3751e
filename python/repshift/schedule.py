"""The paper's keep rule, as the C++ PruneSchedule applies it."""
import math
import operator

import torch


def paper_schedule():
    """r = 0.2 at blocks 0, 3 and 6 (0-based): DeiT's 197 tokens -> 158 -> 127 -> 102."""
    return [(0, 0.2), (3, 0.2), (6, 0.2)]


def _integer(value, name):
    """An integer argument as int; 2.5 tokens is refused, not carried on."""
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} = {value!r} must be an integer, got {type(value).__name__}") from None


def keep_count(tokens: int, drop_ratio: float, protect: int = 1) -> int:
    """N - floor(r N), never fewer than the protected prefix (nor more than N).
    An empty sample keeps 0; a rule that leaves a non-empty sample no token
    is refused."""
    tokens, protect = _integer(tokens, "tokens"), _integer(protect, "protect")
    if not 0.0 <= drop_ratio <= 1.0:
        raise ValueError(f"drop ratio {drop_ratio} must be in [0, 1]")
    if protect < 0:
        raise ValueError(f"protect = {protect} must be >= 0")
    if tokens < 0:
        raise ValueError(f"tokens = {tokens} must be >= 0")
    if tokens == 0:
        return 0
    keep = max(tokens - math.floor(drop_ratio * tokens + 1e-9), min(protect, tokens))
    if keep < 1:
        raise ValueError(f"drop ratio {drop_ratio} with protect = {protect} leaves a sample of {tokens} tokens none")
    return keep


def kept_cu_seqlens(cu_seqlens: torch.Tensor, drop_ratio: float, protect: int = 1) -> torch.Tensor:
    """Offsets of each sample's kept tokens, each sample's count from its own length."""
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError("cu_seqlens must be a 1-D tensor of batch + 1 >= 2 offsets")
    if cu_seqlens.dtype.is_floating_point or cu_seqlens.dtype.is_complex or cu_seqlens.dtype == torch.bool:
        raise ValueError(f"cu_seqlens must hold integers, got {cu_seqlens.dtype}")
    if cu_seqlens[0].item() != 0:
        raise ValueError(f"cu_seqlens[0] = {cu_seqlens[0].item()} must be 0")
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    for b, n in enumerate(lengths):
        if n < 0:
            raise ValueError(f"cu_seqlens decreases at sample {b}: length {n}")
    kept = [0]
    for n in lengths:
        kept.append(kept[-1] + keep_count(n, drop_ratio, protect))
    return torch.tensor(kept, dtype=torch.int32)
