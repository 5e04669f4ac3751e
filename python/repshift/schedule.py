"""The paper's keep rule, as the C++ PruneSchedule applies it."""
import math

import torch


def paper_schedule():
    """r = 0.2 at blocks 0, 3 and 6 (0-based): DeiT's 197 tokens -> 158 -> 127 -> 102."""
    return [(0, 0.2), (3, 0.2), (6, 0.2)]


def keep_count(tokens: int, drop_ratio: float, protect: int = 1) -> int:
    """N - floor(r N), never fewer than the protected prefix (nor more than N).
    A rule that leaves a sample no token is refused."""
    if not 0.0 <= drop_ratio <= 1.0:
        raise ValueError(f"drop ratio {drop_ratio} must be in [0, 1]")
    if protect < 0:
        raise ValueError(f"protect = {protect} must be >= 0")
    if tokens < 1:
        raise ValueError(f"tokens = {tokens} must be >= 1")
    keep = max(tokens - math.floor(drop_ratio * tokens + 1e-9), min(protect, tokens))
    if keep < 1:
        raise ValueError(f"drop ratio {drop_ratio} with protect = {protect} leaves a sample of {tokens} tokens none")
    return keep


def kept_cu_seqlens(cu_seqlens: torch.Tensor, drop_ratio: float, protect: int = 1) -> torch.Tensor:
    """Offsets of each sample's kept tokens, each sample's count from its own length."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    kept = [0]
    for n in lengths:
        kept.append(kept[-1] + keep_count(n, drop_ratio, protect))
    return torch.tensor(kept, dtype=torch.int32)
