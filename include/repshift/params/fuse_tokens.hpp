#pragma once
// Compress = Fuse's extra row (cpu/fuse_tokens.hpp, cuda/fuse_tokens.cuh):
// for each sample that dropped tokens, the mean of its dropped rows of src
// weighted by their scores (FuseWeights: uniform when those do not sum to
// > 0), written right after its kept rows in out.
//   Padded (offsets null): sample b's rows at b * tokens, its kept indices
//   at b * keep, its output rows at b * (keep + 1).
//   Packed: cu_seqlens / kept_cu_seqlens / out_cu_seqlens, in the
//   executor's memory; a sample that keeps every token gets no extra row.

#include <cmath>
#include <cstdint>

#include "../core/config.hpp"

namespace repshift {

// The weight of a dropped row by its score: its share of the dropped rows'
// total (summed in double), uniform when that is not > 0 (or NaN). Scores
// of +inf (an L2 shift past ~1.8e19) make the total +inf, where s / total
// would be inf / inf = NaN: they share the weight equally, the limit as
// they grow alike, and the finite ones get none.
struct FuseWeights {
  double total = 0.0;
  std::int64_t dropped = 0, infinite = 0;  // rows dropped; of them scored +inf
  REPSHIFT_HD float of(float score) const {
    if (total == double(INFINITY)) return score == INFINITY ? 1.0f / float(infinite) : 0.0f;
    return total > 0.0 ? float(double(score) / total) : 1.0f / float(dropped);
  }
};

template <class T>
struct FuseParams {
  const T* src = nullptr;        // [rows, channels]
  const float* scores = nullptr; // [rows]
  const int* keep_idx = nullptr; // kept indices per sample, ascending
  T* out = nullptr;
  std::int64_t batch = 0, tokens = 0, keep = 0, channels = 0;  // tokens / keep: the longest sample's when packed
  const int* cu_seqlens = nullptr;
  const int* kept_cu_seqlens = nullptr;
  const int* out_cu_seqlens = nullptr;
};

}  // namespace repshift
