#pragma once
// Umbrella header for the CUDA primitives (needs nvcc; target
// repshift::cuda): everything of repshift.hpp plus rs::Cuda{stream} for the
// entry points, and the SsmScan kernels (rs::cuda::selective_scan,
// rs::cuda::causal_conv1d_silu) and the CnnRows ones (rs::cuda::line_scores,
// rs::cuda::remove_lines).
//
//   rs::shift_score<rs::policies::L2>(rs::Cuda{stream}, d_before, d_after, d_scores, B, N, C);
//
// The rest of the CUDA path has its own headers: cuda/attention.cuh (flash
// and map attention), cuda/merge_tokens.cuh, cuda/blas.cuh (cuBLASLt),
// cuda/cudnn_conv_ops.cuh and cuda/cudnn_models.cuh (the CNN block's
// convolutions and rs::cuda::ResNet, cuDNN; target repshift::cudnn) and
// cuda/models.cuh (rs::cuda::VisionTransformer / VisionMamba). The Blocks
// and models themselves are the CPU's (blocks/, models/): one forward over
// Exec, run with rs::Cuda{stream} once this header is included.

#include "repshift.hpp"
#include "cuda/backend.cuh"
#include "cuda/line_prune.cuh"
#include "cuda/selective_scan.cuh"
