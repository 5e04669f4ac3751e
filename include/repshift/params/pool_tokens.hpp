#pragma once
// Mean pooling of each sample's token rows, the head of the mean-pooled
// models (BERT sentence embeddings, the video encoder):
//   out[b] = sum_i s_i x_i / sum_i s_i  over sample b's rows i
// with s_i = sizes[i] (Merge: a merged row counts for the tokens it holds)
// or 1, then divided by its L2 norm when `normalize` (sentence-transformers'
// Normalize; a zero vector stays zero). Rows are packed by cu_seqlens or,
// with cu_seqlens null, `tokens` per sample.

#include <cstdint>

namespace repshift {

template <class T>
struct PoolParams {
  const T* x = nullptr;              // [rows, channels]
  const int* cu_seqlens = nullptr;   // optional [batch + 1]
  const float* sizes = nullptr;      // optional [rows]
  std::int64_t batch = 0, tokens = 0, channels = 0;
  bool normalize = false;
  T* out = nullptr;                  // [batch, channels]
};

}  // namespace repshift
