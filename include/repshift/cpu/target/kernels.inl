// Every per-target kernel file, in dependency order: simd_targets.hpp
// includes this once in each extra target's namespace and region. A new
// hand-vectorised kernel adds its .inl here.
#include "simd.inl"
#include "math.inl"
#include "gemm_tile.inl"
#include "flash_head.inl"
#include "selective_scan.inl"
