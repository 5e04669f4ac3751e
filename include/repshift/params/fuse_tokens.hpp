#pragma once
// Compress = Fuse's extra row (cpu/fuse_tokens.hpp, cuda/fuse_tokens.cuh):
// for each sample that dropped tokens, the mean of its dropped rows of src
// weighted by their scores (uniform when those do not sum to > 0), written
// right after its kept rows in out.
//   Padded (offsets null): sample b's rows at b * tokens, its kept indices
//   at b * keep, its output rows at b * (keep + 1).
//   Packed: cu_seqlens / kept_cu_seqlens / out_cu_seqlens, in the
//   executor's memory; a sample that keeps every token gets no extra row.

#include <cstdint>

namespace repshift {

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
