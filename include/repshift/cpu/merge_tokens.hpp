#pragma once
// Representation-shift-guided token merging (ToMe's bipartite soft
// matching, with the importance deciding who merges):
//
//   1. tokens [protect, N) alternate into set A (protect, protect + 2, ...)
//      and set B (protect + 1, protect + 3, ...); the protected prefix
//      (CLS) is in neither and always survives;
//   2. every A token is matched to its most similar B token by cosine of
//      their match features (keys), ties to the lower index; a zero feature
//      vector has similarity 0 to everything;
//   3. the r = N - keep A tokens of lowest importance (the selection rule of
//      policies/select.hpp, read upside down: NaN merges first) are merged
//      into their matches: out = sum(size x row) / sum(size), sizes add up;
//   4. survivors keep their original order; keep_idx lists them (each
//      merged group is represented by its B token's index).
//
// A layer can merge at most |A| tokens: keep >= merge_min_keep(N, protect).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../params/merge_tokens.hpp"
#include "../policies/compress.hpp"
#include "../policies/select.hpp"
#include "parallel.hpp"

namespace repshift {

namespace cpu {

namespace detail {

// Per-sample scratch: unit match features of every token and the merge plan.
struct MergeScratch {
  std::vector<float> unit;            // [tokens, key_channels], zero rows for zero keys
  std::vector<std::int64_t> target;   // [tokens] survivor a token ends up in (itself if it survives)
  std::vector<std::uint64_t> ranks;   // A tokens' selection ranks
  std::vector<double> acc, weight;    // [keep, channels], [keep]
  std::vector<std::int64_t> slot;     // [tokens] output row of a survivor, -1 otherwise
};

inline void merge_sample(const MergeParams& p, std::int64_t b, MergeScratch& s) {
  const std::int64_t n = p.tokens_of(b, p.tokens), keep = p.keep_of(b, p.keep);
  const std::int64_t ck = p.key_channels, c = p.channels, ks = p.key_stride();
  const std::int64_t in = seq_begin(p.cu_seqlens, b, p.tokens), out = seq_begin(p.kept_cu_seqlens, b, p.keep);
  const float* scores = p.scores + in;
  const float* sizes = p.sizes ? p.sizes + in : nullptr;

  s.unit.assign(std::size_t(n * ck), 0.0f);
  for (std::int64_t t = p.protect; t < n; ++t) {
    const float* k = p.keys + (in + t) * ks;
    float* u = s.unit.data() + t * ck;
    double sq = 0;
    for (std::int64_t i = 0; i < ck; ++i) {
      u[i] = k[i] + (p.key_bias ? p.key_bias[i] : 0.0f);
      sq += double(u[i]) * u[i];
    }
    const float inv = sq > 0 ? float(1.0 / std::sqrt(sq)) : 0.0f;
    for (std::int64_t i = 0; i < ck; ++i) u[i] *= inv;
  }

  // Which A tokens merge: the r of lowest rank.
  s.target.resize(std::size_t(n));
  for (std::int64_t t = 0; t < n; ++t) s.target[std::size_t(t)] = t;
  const std::int64_t r = n - keep;
  s.ranks.clear();
  for (std::int64_t t = p.protect; t < n; t += 2) s.ranks.push_back(policies::selection_rank(scores[t], std::uint32_t(t)));
  std::sort(s.ranks.begin(), s.ranks.end());  // ascending: the least important first
  for (std::int64_t m = 0; m < r; ++m) {
    const std::int64_t a = policies::rank_index(s.ranks[std::size_t(m)]);
    const float* ua = s.unit.data() + a * ck;
    std::int64_t best = p.protect + 1;  // the first B token; r > 0 implies B is not empty
    float best_sim = -INFINITY;
    for (std::int64_t bt = p.protect + 1; bt < n; bt += 2) {
      const float* ub = s.unit.data() + bt * ck;
      float sim = 0.0f;
      for (std::int64_t i = 0; i < ck; ++i) sim += ua[i] * ub[i];
      if (sim > best_sim) best_sim = sim, best = bt;  // strict: ties keep the lower index
    }
    s.target[std::size_t(a)] = best;
  }

  // Size-weighted sums into the survivors, in token order.
  s.slot.assign(std::size_t(n), -1);
  std::int64_t k = 0;
  for (std::int64_t t = 0; t < n; ++t)
    if (s.target[std::size_t(t)] == t) s.slot[std::size_t(t)] = k, p.keep_idx[out + k++] = int(t);
  s.acc.assign(std::size_t(keep * c), 0.0);
  s.weight.assign(std::size_t(keep), 0.0);
  for (std::int64_t t = 0; t < n; ++t) {
    const std::int64_t o = s.slot[std::size_t(s.target[std::size_t(t)])];
    const double w = sizes ? double(sizes[t]) : 1.0;
    const float* row = p.x + (in + t) * c;
    double* acc = s.acc.data() + o * c;
    for (std::int64_t i = 0; i < c; ++i) acc[i] += w * row[i];
    s.weight[std::size_t(o)] += w;
  }
  for (std::int64_t o = 0; o < keep; ++o) {
    const double inv = 1.0 / s.weight[std::size_t(o)];
    float* dst = p.out + (out + o) * c;
    const double* acc = s.acc.data() + o * c;
    for (std::int64_t i = 0; i < c; ++i) dst[i] = float(acc[i] * inv);
    if (p.out_sizes) p.out_sizes[out + o] = float(s.weight[std::size_t(o)]);
  }
}

}  // namespace detail

// One task per sample; O(|A| x |B| x key_channels) matching per sample.
inline void merge_tokens(const Host& host, const MergeParams& p) {
  p.check("merge_tokens");
  p.check_host("merge_tokens", p.batch, p.tokens, p.keep, p.protect);
  for (std::int64_t b = 0; p.packed() && b < p.batch; ++b) {
    MergeParams::check_reachable("merge_tokens", p.tokens_of(b, p.tokens), p.keep_of(b, p.keep), p.protect);
  }
  const std::int64_t rows = p.packed() ? seq_begin(p.cu_seqlens, p.batch, 0) : p.batch * p.tokens;
  if (p.sizes) MergeParams::check_sizes("merge_tokens", p.sizes, rows);
#pragma omp parallel num_threads(thread_count(host))
  {
    detail::MergeScratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t b = 0; b < p.batch; ++b) detail::merge_sample(p, b, scratch);
  }
}

}  // namespace cpu
}  // namespace repshift
