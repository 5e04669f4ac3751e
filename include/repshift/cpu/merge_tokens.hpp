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
#include "gemm_tile.hpp"
#include "parallel.hpp"

namespace repshift {

namespace cpu {

namespace detail {

// Rows of merging A tokens matched per similarity block: whole register
// tiles, and a block of [kMatchRows, |B|] similarities stays in L2.
constexpr std::int64_t kMatchRows = 16 * kTileRows;
// Channels per task of the weighted sums: whole cache lines of every row.
constexpr std::int64_t kSumChannels = 64;

// One sample's merge plan: which A tokens merge, their unit keys and B's,
// then each one's match (target) and the output rows. Buffers only grow.
struct MergePlan {
  std::int64_t n = 0, keep = 0, in = 0, out = 0, b_count = 0, b_padded = 0;
  std::vector<std::uint64_t> ranks;   // A tokens' selection ranks
  std::vector<std::int64_t> merging;  // the r = n - keep A tokens that merge, least important first
  std::vector<float> a_unit;          // [r, key_channels]: their unit keys
  std::vector<float> b_unit_t;        // [key_channels, b_padded]: B's unit keys, transposed, zero past |B|
  std::vector<std::int64_t> target;   // [n] survivor a token ends up in (itself if it survives)
  std::vector<std::int64_t> slot;     // [n] output row of a survivor, -1 otherwise
  std::vector<double> weight;         // [keep] each survivor's summed size
  std::int64_t merging_rows() const { return std::int64_t(merging.size()); }
  std::int64_t key_jobs() const { return merging_rows() + b_padded / kVec; }  // unit_keys' range
};

// Which A tokens of sample b merge (the r of lowest rank); the buffers the
// other steps fill, sized.
inline void plan_sample(const MergeParams& p, std::int64_t b, MergePlan& s) {
  s.n = p.tokens_of(b, p.tokens), s.keep = p.keep_of(b, p.keep);
  s.in = seq_begin(p.cu_seqlens, b, p.tokens), s.out = seq_begin(p.kept_cu_seqlens, b, p.keep);
  const std::int64_t ck = p.key_channels, r = s.n - s.keep;
  const float* scores = p.scores + s.in;
  s.target.resize(std::size_t(s.n));
  for (std::int64_t t = 0; t < s.n; ++t) s.target[std::size_t(t)] = t;
  s.ranks.clear();
  for (std::int64_t t = p.protect; t < s.n; t += 2) s.ranks.push_back(policies::selection_rank(scores[t], std::uint32_t(t)));
  std::sort(s.ranks.begin(), s.ranks.end());  // ascending: the least important first
  s.merging.resize(std::size_t(std::max<std::int64_t>(r, 0)));
  for (std::size_t m = 0; m < s.merging.size(); ++m) s.merging[m] = policies::rank_index(s.ranks[m]);
  s.b_count = r > 0 ? (s.n - p.protect) / 2 : 0;  // r > 0 implies B is not empty
  s.b_padded = round_up(s.b_count, kVec);
  s.a_unit.resize(s.merging.size() * std::size_t(ck));
  s.b_unit_t.resize(std::size_t(ck * s.b_padded));
}

// Token `row`'s key with the bias, scaled to unit length, into
// u[0, key_channels): the squares summed in double (a float's square is
// exact there, only the sum rounds), the scale rounded to float; a zero
// key stays zero (similarity 0 to everything).
inline void unit_key(const MergeParams& p, std::int64_t row, float* u) {
  const float* k = p.keys + row * p.key_stride();
  const std::int64_t ck = p.key_channels;
  if (p.key_bias) {
    for (std::int64_t i = 0; i < ck; ++i) u[i] = k[i] + p.key_bias[i];
  } else {
    std::copy(k, k + ck, u);
  }
  double sq = 0;
#pragma omp simd reduction(+ : sq)
  for (std::int64_t i = 0; i < ck; ++i) sq += double(u[i]) * double(u[i]);
  const float inv = sq > 0 ? float(1.0 / std::sqrt(sq)) : 0.0f;
  for (std::int64_t i = 0; i < ck; ++i) u[i] *= inv;
}

// Unit keys for jobs [begin, end) of key_jobs(): one per merging A token,
// then one per kVec B tokens, whose keys are staged as rows and written to
// b_unit_t a column vector at a time (the group's last columns past |B|
// zero). stage: scratch, grown here.
inline void unit_keys(const MergeParams& p, MergePlan& s, std::int64_t begin, std::int64_t end,
                      std::vector<float>& stage) {
  const std::int64_t ck = p.key_channels, r = s.merging_rows();
  for (std::int64_t j = begin; j < end; ++j) {
    if (j < r) {
      unit_key(p, s.in + s.merging[std::size_t(j)], s.a_unit.data() + j * ck);
      continue;
    }
    const std::int64_t first = (j - r) * kVec, count = std::min<std::int64_t>(kVec, s.b_count - first);
    stage.assign(std::size_t(kVec * ck), 0.0f);
    for (std::int64_t q = 0; q < count; ++q) unit_key(p, s.in + p.protect + 1 + 2 * (first + q), stage.data() + q * ck);
    for (std::int64_t i = 0; i < ck; ++i) {
      vfloat column;
      for (int q = 0; q < kVec; ++q) column[q] = stage[std::size_t(q * ck + i)];
      storev(s.b_unit_t.data() + i * s.b_padded + first, column);
    }
  }
}

// Merging rows [begin, end) find their B match: similarities as one
// product of unit keys (each a sum over the channels in order, the same
// whatever rows share the block), then the highest, strict >, so ties keep
// the lower index. sims: scratch, grown here.
inline void match_rows(const MergeParams& p, MergePlan& s, std::int64_t begin, std::int64_t end,
                       std::vector<float>& sims) {
  const std::int64_t ck = p.key_channels, bp = s.b_padded;
  if (sims.size() < std::size_t((end - begin) * bp)) sims.resize(std::size_t((end - begin) * bp));
  gemm_tiled(end - begin, bp / kVec, ck, s.a_unit.data() + begin * ck, ck, s.b_unit_t.data(), bp, sims.data(), bp,
             nullptr);
  for (std::int64_t m = begin; m < end; ++m) {
    const float* row = sims.data() + (m - begin) * bp;
    std::int64_t best = 0;
    float best_sim = -INFINITY;
    for (std::int64_t j = 0; j < s.b_count; ++j) {
      if (row[j] > best_sim) best_sim = row[j], best = j;
    }
    s.target[std::size_t(s.merging[std::size_t(m)])] = p.protect + 1 + 2 * best;
  }
}

// Survivors in token order (keep_idx) and each one's summed size.
inline void number_survivors(const MergeParams& p, MergePlan& s) {
  const float* sizes = p.sizes ? p.sizes + s.in : nullptr;
  s.slot.assign(std::size_t(s.n), -1);
  std::int64_t k = 0;
  for (std::int64_t t = 0; t < s.n; ++t)
    if (s.target[std::size_t(t)] == t) s.slot[std::size_t(t)] = k, p.keep_idx[s.out + k++] = int(t);
  s.weight.assign(std::size_t(s.keep), 0.0);
  for (std::int64_t t = 0; t < s.n; ++t) {
    s.weight[std::size_t(s.slot[std::size_t(s.target[std::size_t(t)])])] += sizes ? double(sizes[t]) : 1.0;
  }
  for (std::int64_t o = 0; p.out_sizes && o < s.keep; ++o) p.out_sizes[s.out + o] = float(s.weight[std::size_t(o)]);
}

// Output channels [c0, c0 + kSumChannels) of every survivor: the
// size-weighted mean of its group, summed in double in token order.
// acc: scratch, grown here.
inline void write_channels(const MergeParams& p, const MergePlan& s, std::int64_t c0, std::vector<double>& acc) {
  const std::int64_t c = p.channels, c1 = std::min(c0 + kSumChannels, c), width = c1 - c0;
  const float* sizes = p.sizes ? p.sizes + s.in : nullptr;
  acc.assign(std::size_t(s.keep * width), 0.0);
  for (std::int64_t t = 0; t < s.n; ++t) {
    const std::int64_t o = s.slot[std::size_t(s.target[std::size_t(t)])];
    const double w = sizes ? double(sizes[t]) : 1.0;
    const float* row = p.x + (s.in + t) * c + c0;
    double* dst = acc.data() + o * width;
    for (std::int64_t i = 0; i < width; ++i) dst[i] += w * row[i];
  }
  for (std::int64_t o = 0; o < s.keep; ++o) {
    const double inv = 1.0 / s.weight[std::size_t(o)];
    float* dst = p.out + (s.out + o) * c + c0;
    for (std::int64_t i = 0; i < width; ++i) dst[i] = float(acc[std::size_t(o * width + i)] * inv);
  }
}

// Sample b whole, on the calling thread.
inline void merge_sample(const MergeParams& p, std::int64_t b, MergePlan& s, std::vector<float>& scratch,
                         std::vector<double>& acc) {
  plan_sample(p, b, s);
  unit_keys(p, s, 0, s.key_jobs(), scratch);
  for (std::int64_t m = 0; m < s.merging_rows(); m += kMatchRows) {
    match_rows(p, s, m, std::min(m + kMatchRows, s.merging_rows()), scratch);
  }
  number_survivors(p, s);
  for (std::int64_t c0 = 0; c0 < p.channels; c0 += kSumChannels) write_channels(p, s, c0, acc);
}

}  // namespace detail

// With at least as many samples as threads, one task per sample; with
// fewer (a long video clip alone), the samples one at a time, every step
// but the ranking and numbering split over the threads (keys, blocks of
// merging rows, blocks of channels). No result depends on the split: a
// sample merges the same alone as in any batch. O(r x |B| x key_channels)
// per sample, on the register-tiled GEMM. Scratch is per thread and only
// grows.
inline void merge_tokens(const Host& host, const MergeParams& p) {
  p.check("merge_tokens");
  p.check_host("merge_tokens", p.batch, p.tokens, p.keep, p.protect);
  for (std::int64_t b = 0; p.packed() && b < p.batch; ++b) {
    MergeParams::check_reachable("merge_tokens", p.tokens_of(b, p.tokens), p.keep_of(b, p.keep), p.protect);
  }
  const std::int64_t rows = p.packed() ? seq_begin(p.cu_seqlens, p.batch, 0) : p.batch * p.tokens;
  if (p.sizes) MergeParams::check_sizes("merge_tokens", p.sizes, rows);
  const int threads = thread_count(host);
  static thread_local detail::MergePlan shared;  // the sample in hand when samples are fewer than threads
  detail::MergePlan& plan = shared;
#pragma omp parallel num_threads(threads)
  {
    static thread_local detail::MergePlan own;
    static thread_local std::vector<float> scratch;  // staged keys, then similarities
    static thread_local std::vector<double> acc;
    if (p.batch >= threads) {
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t b = 0; b < p.batch; ++b) detail::merge_sample(p, b, own, scratch, acc);
    } else {
      for (std::int64_t b = 0; b < p.batch; ++b) {
#pragma omp single
        detail::plan_sample(p, b, plan);
#pragma omp for schedule(static)
        for (std::int64_t j = 0; j < plan.key_jobs(); ++j) detail::unit_keys(p, plan, j, j + 1, scratch);
        // Four blocks per thread (whole tiles, at most kMatchRows rows) balance the uneven last block.
        const std::int64_t r = plan.merging_rows(), quarter = (r + 4 * threads - 1) / (4 * threads);
        const std::int64_t block = std::min(
            detail::kMatchRows, std::max<std::int64_t>(detail::kTileRows, detail::round_up(quarter, detail::kTileRows)));
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t m = 0; m < r; m += block) detail::match_rows(p, plan, m, std::min(m + block, r), scratch);
#pragma omp single
        detail::number_survivors(p, plan);
#pragma omp for schedule(static)
        for (std::int64_t c0 = 0; c0 < p.channels; c0 += detail::kSumChannels) detail::write_channels(p, plan, c0, acc);
      }
    }
  }
}

}  // namespace cpu
}  // namespace repshift
