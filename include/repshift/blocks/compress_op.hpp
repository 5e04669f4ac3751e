#pragma once
// CompressOp<Compress>: what a compress policy does to a layer's tokens,
// on any executor, and what it asks of a layer. Every token block takes the
// same road: scores -> CompressOp<Compress>::run -> the next layer.
//   Prune  select each sample's top keep, gather them in order;
//   Fuse   as Prune, plus the dropped rows' importance-weighted mean;
//   Merge  ToMe's bipartite merge by the scores and the layer's keys.

#include <cstdint>
#include <string>

#include "../core/backend.hpp"
#include "../core/error.hpp"
#include "../params/merge_tokens.hpp"
#include "../params/gather_tokens.hpp"
#include "../params/select_top.hpp"
#include "../params/fuse_tokens.hpp"
#include "../policies/compress.hpp"
#include "workspace.hpp"

namespace repshift {

// One layer's compression: src (its input rows) -> dst, by the scores.
// Padded (offsets null): `batch` samples of `tokens`, each keeping `keep`;
// packed: the plan's offsets, `tokens` / `keep` the longest sample's.
template <class T>
struct CompressInputs {
  const T* src = nullptr;
  T* dst = nullptr;
  const float* scores = nullptr;
  int* keep_idx = nullptr;  // [kept rows]
  std::int64_t batch = 0, tokens = 0, keep = 0, channels = 0, protect = 0;
  PlanOffsets offsets;
  // Merge: the match features (rows of key_channels = channels at
  // keys_token_stride), a bias added to them, and the token sizes.
  const T* keys = nullptr;
  const T* key_bias = nullptr;
  std::int64_t keys_token_stride = 0;
  const float* sizes = nullptr;
  float* kept_sizes = nullptr;
};

template <class Compress>
struct CompressOp;

namespace detail {

// Select + gather, shared by Prune and Fuse (Extra rows follow each
// sample's kept ones in dst).
template <int Extra, class Exec, class T>
void select_and_gather(const Exec& exec, const CompressInputs<T>& c) {
  const PackedRows rows{c.offsets.in, c.offsets.kept};
  const auto select = SelectParams::contiguous(c.scores, c.keep_idx, c.batch, c.tokens, c.keep, c.protect, rows);
  Backend<Exec>::select_top(exec, select);
  const auto gather = GatherParams<T>::contiguous(c.src, c.keep_idx, c.dst, c.batch, c.tokens, c.keep, c.channels,
                                                  c.keep + Extra, rows, c.offsets.out);
  Backend<Exec>::gather_tokens(exec, gather);
}

}  // namespace detail

template <>
struct CompressOp<policies::Prune> {
  static constexpr int extra_tokens = policies::Prune::extra_tokens;
  static constexpr bool tracks_sizes = policies::Prune::tracks_sizes;
  static void check_reachable(const char*, std::int64_t, std::int64_t, std::int64_t) {}
  template <class Exec, class T>
  static void run(const Exec& exec, const CompressInputs<T>& c) {
    detail::select_and_gather<0>(exec, c);
  }
};

template <>
struct CompressOp<policies::Fuse> {
  static constexpr int extra_tokens = policies::Fuse::extra_tokens;
  static constexpr bool tracks_sizes = policies::Fuse::tracks_sizes;
  static void check_reachable(const char*, std::int64_t, std::int64_t, std::int64_t) {}
  template <class Exec, class T>
  static void run(const Exec& exec, const CompressInputs<T>& c) {
    detail::select_and_gather<1>(exec, c);
    FuseParams<T> f;
    f.src = c.src;
    f.scores = c.scores;
    f.keep_idx = c.keep_idx;
    f.out = c.dst;
    f.batch = c.batch;
    f.tokens = c.tokens;
    f.keep = c.keep;
    f.channels = c.channels;
    f.cu_seqlens = c.offsets.in;
    f.kept_cu_seqlens = c.offsets.kept;
    f.out_cu_seqlens = c.offsets.out;
    Backend<Exec>::fuse_dropped(exec, f);
  }
};

template <>
struct CompressOp<policies::Merge> {
  static constexpr int extra_tokens = policies::Merge::extra_tokens;
  static constexpr bool tracks_sizes = policies::Merge::tracks_sizes;
  // Merge can remove at most |A| tokens of a sample.
  static void check_reachable(const char* where, std::int64_t tokens, std::int64_t keep, std::int64_t protect) {
    MergeParams::check_reachable(where, tokens, keep, protect);
  }
  template <class Exec, class T>
  static void run(const Exec& exec, const CompressInputs<T>& c) {
    BasicMergeParams<T> m;
    m.cu_seqlens = c.offsets.in;
    m.kept_cu_seqlens = c.offsets.kept;
    m.x = c.src;
    m.keys = c.keys;
    m.key_bias = c.key_bias;
    m.keys_token_stride = c.keys_token_stride;
    m.scores = c.scores;
    m.sizes = c.sizes;
    m.out = c.dst;
    m.out_sizes = c.kept_sizes;
    m.keep_idx = c.keep_idx;
    m.batch = c.batch;
    m.tokens = c.tokens;
    m.keep = c.keep;
    m.channels = m.key_channels = c.channels;
    m.protect = c.protect;
    Backend<Exec>::merge_tokens(exec, m);
  }
};

}  // namespace repshift
