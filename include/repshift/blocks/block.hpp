#pragma once
// Block<Backbone, Site, Importance, Compress, Norm>: one layer of a backbone
// that measures representation shift at Site with Importance inside its own
// epilogues and compresses tokens with Compress. The primary template
// refuses; each supported backbone specialises it (blocks/transformer_block.hpp,
// blocks/ssm_block.hpp, blocks/cnn_block.hpp).

#include <cstdint>

#include "../core/error.hpp"
#include "../policies/compress.hpp"
#include "../policies/norm_placement.hpp"

namespace repshift {
namespace detail {

// x and y, spans in bytes, must not share a byte: a block reads x after it
// has written y (the residual, the score), so any overlap, not only x ==
// y, would give wrong values silently.
inline void require_y_apart_from_x(const char* where, const void* x, std::int64_t x_bytes, const void* y,
                                   std::int64_t y_bytes) {
  const auto xs = reinterpret_cast<std::uintptr_t>(x), ys = reinterpret_cast<std::uintptr_t>(y);
  if (xs < ys + std::uint64_t(y_bytes) && ys < xs + std::uint64_t(x_bytes)) {
    fail(where, "y must not alias x: y's {} bytes overlap x's {} bytes (y - x = {} bytes)", y_bytes, x_bytes,
         static_cast<std::int64_t>(ys - xs));
  }
}

// What every token Block checks first: x [batch, tokens, ...] -> y with
// `keep` tokens, the first `protect` always kept.
inline void check_token_block_args(const char* where, const void* x, const void* y, int batch, int tokens, int keep,
                                   int protect) {
  require_pointer(where, "x", x);
  require_pointer(where, "y", y);
  require_positive(where, "batch", batch);
  require_positive(where, "tokens", tokens);
  require_positive(where, "keep", keep);
  require_non_negative(where, "protect", protect);
  require_at_most(where, "keep", keep, "tokens", tokens);
  require_at_most(where, "protect", protect, "keep", keep);
}

}  // namespace detail

template <class Backbone, class Site, class Importance, class Compress = policies::Prune,
          class Norm = policies::PreNorm>
struct Block {
  static_assert(sizeof(Backbone) == 0,
                "repshift::Block: this Backbone x Compress combination is not implemented "
                "(supported: Block<Transformer, Site, Importance, Prune|Fuse|Merge, PreNorm|PostNorm>, "
                "Block<SsmScan, BlockOutput, Importance, Prune, PreNorm>, Block<CnnRows, BlockOutput, Importance, Prune, PreNorm>)");
};

}  // namespace repshift
