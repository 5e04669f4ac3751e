#pragma once
// Umbrella header for the CUDA path (needs nvcc): everything of
// repshift.hpp plus rs::Cuda{stream} for the entry points, and the SsmScan
// kernels (rs::cuda::selective_scan, rs::cuda::causal_conv1d_silu) and the
// CnnRows ones (rs::cuda::line_scores, rs::cuda::remove_lines).
//
//   rs::shift_score<rs::policies::L2>(rs::Cuda{stream}, d_before, d_after, d_scores, B, N, C);

#include "repshift.hpp"
#include "cuda/backend.cuh"
#include "cuda/line_prune.cuh"
#include "cuda/selective_scan.cuh"
