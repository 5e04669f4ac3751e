#pragma once
// Text token embedding (BERT): packed row i of sample b, at position
// t = i - cu_seqlens[b] within it, is
//   out[i] = LayerNorm(word[id] + position[t] + token_type[0])
// with id = ids[i] when the ids are packed like the rows (ids_stride = 0)
// or ids[b * ids_stride + t] when they are padded [batch, ids_stride].
// ids and cu_seqlens live where the executor's kernels read them. An id
// outside [0, vocab) is refused on the CPU before anything is written; on
// CUDA its row is zeroed and it is recorded in exec.status (code 5).

#include <cstdint>

#include "layer_norm.hpp"

namespace repshift {

template <class T>
struct EmbedParams {
  const int* ids = nullptr;
  std::int64_t ids_stride = 0;       // 0: packed like the rows; else padded [batch, ids_stride]
  const int* cu_seqlens = nullptr;   // [batch + 1]
  std::int64_t batch = 0, rows = 0;  // rows = cu_seqlens[batch]
  std::int64_t dim = 0, vocab = 0;
  const T* word = nullptr;           // [vocab, dim]
  const T* position = nullptr;       // [positions, dim]; position t at row t
  const T* token_type = nullptr;     // [types, dim]; type 0 for every token
  LayerNormParams<T> norm;
  T* out = nullptr;                  // [rows, dim]
};

}  // namespace repshift
