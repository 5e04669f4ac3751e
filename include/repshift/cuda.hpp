#pragma once
// Umbrella header for the CUDA path (needs nvcc): everything of
// repshift.hpp plus rs::Cuda{stream} for the entry points.
//
//   rs::shift_score<rs::policies::L2>(rs::Cuda{stream}, d_before, d_after, d_scores, B, N, C);

#include "repshift.hpp"
#include "cuda/backend.cuh"
