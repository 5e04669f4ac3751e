"""The library's compress policies and what each does to a block's output,
read once from the C++ registry (policies/registry.hpp): the fake kernels
and the patches use these tables rather than knowing policies by name."""
import torch

from . import _C  # noqa: F401  (registers torch.ops.repshift.*)

_names, _extra_tokens, _tracks_sizes = torch.ops.repshift.compress_policies()
# Tokens a block appends to a sample that dropped some (fuse: the fused token).
EXTRA_TOKENS = dict(zip(_names, _extra_tokens))
# Whether token sizes travel from block to block (merge).
TRACKS_SIZES = dict(zip(_names, _tracks_sizes))
