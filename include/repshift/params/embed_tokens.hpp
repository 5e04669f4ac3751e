#pragma once
// Text token embedding (BERT): packed row i of sample b, at position
// t = i - cu_seqlens[b] within it, is
//   out[i] = LayerNorm(word[id] + position[t] + token_type[0])
// with id = ids[i] when the ids are packed like the rows (ids_stride = 0)
// or ids[b * ids_stride + t] when they are padded [batch, ids_stride].
// ids and cu_seqlens live where the executor's kernels read them. An id
// outside [0, vocab) is refused on the CPU before anything is written
// (check_ids_host); on CUDA its row is zeroed and it is recorded in
// exec.status (code 5).

#include <cstdint>

#include "../core/config.hpp"
#include "../core/error.hpp"
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

  // Where the id of sample b's token t sits in `ids`.
  REPSHIFT_HD std::int64_t id_at(std::int64_t b, std::int64_t t) const {
    return ids_stride ? b * ids_stride + t : std::int64_t(cu_seqlens[b]) + t;
  }

  // Every id in [0, vocab), ids and cu_seqlens in host memory; the first
  // one outside is refused, named by its place in `ids`.
  void check_ids_host(const char* where) const {
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t t = 0; t < std::int64_t(cu_seqlens[b + 1]) - cu_seqlens[b]; ++t) {
        const std::int64_t i = id_at(b, t);
        if (ids[i] < 0 || ids[i] >= vocab) {
          detail::fail(where, "ids[{}] = {} is outside [0, vocab_size = {})", i, ids[i], vocab);
        }
      }
    }
  }
};

}  // namespace repshift
