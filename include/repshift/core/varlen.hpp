#pragma once
// Token batches of unequal lengths, in FlashAttention's varlen convention:
// the tokens of all samples packed as [total, C], sample b's rows
// [cu_seqlens[b], cu_seqlens[b + 1]), cu_seqlens[0] = 0 and
// cu_seqlens[batch] = total. A padded [batch, tokens, C] batch is the packed
// layout with cu_seqlens[b] = b * tokens, so one kernel serves both: a params
// struct holds cu_seqlens (null: uniform) and asks seq_begin / seq_length.
//
// Pruned outputs follow the same convention with kept_cu_seqlens, each
// sample's keep count taken from its own length (PruneSchedule::keep_at):
// a sample keeps the same tokens alone or inside any batch.

#include <cstdint>
#include <limits>
#include <vector>

#include "config.hpp"
#include "error.hpp"

namespace repshift {

// First row of sample b: cu_seqlens[b], or b * uniform when cu_seqlens is null.
REPSHIFT_HD std::int64_t seq_begin(const int* cu_seqlens, std::int64_t b, std::int64_t uniform) {
  return cu_seqlens ? std::int64_t(cu_seqlens[b]) : b * uniform;
}

// Rows of sample b: cu_seqlens[b + 1] - cu_seqlens[b], or uniform.
REPSHIFT_HD std::int64_t seq_length(const int* cu_seqlens, std::int64_t b, std::int64_t uniform) {
  return cu_seqlens ? std::int64_t(cu_seqlens[b + 1]) - cu_seqlens[b] : uniform;
}

namespace detail {

// cu_seqlens (host memory) of `batch` samples: starts at 0, never
// decreases, and ends at `total` when total >= 0 (-1: any end).
inline void check_cu_seqlens(const char* where, const char* name, const int* cu_seqlens, std::int64_t batch,
                             std::int64_t total = -1) {
  require_pointer(where, name, cu_seqlens);
  require_positive(where, "batch", batch);
  if (cu_seqlens[0] != 0) {
    fail(where, "{}[0] = {} must be 0", name, cu_seqlens[0]);
  }
  for (std::int64_t b = 0; b < batch; ++b) {
    if (cu_seqlens[b + 1] < cu_seqlens[b]) {
      fail(where, "{0} decreases: {0}[{1}] = {2} < {0}[{3}] = {4}", name, b + 1, cu_seqlens[b + 1], b, cu_seqlens[b]);
    }
  }
  if (total >= 0 && cu_seqlens[batch] != total) {
    fail(where, "{}[batch = {}] = {} must equal the total token count {}", name, batch, cu_seqlens[batch], total);
  }
}

// Every sample of cu_seqlens has at least `min_tokens` tokens.
inline void check_min_seqlen(const char* where, const char* name, const int* cu_seqlens, std::int64_t batch,
                             std::int64_t min_tokens, const char* min_name) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t n = seq_length(cu_seqlens, b, 0);
    if (n < min_tokens) {
      fail(where, "sample {} of {} has {} tokens, fewer than {} = {}", b, name, n, min_name, min_tokens);
    }
  }
}

}  // namespace detail

// Whether a sample of n tokens may keep k: every protected one (up to n),
// at least one of a non-empty sample, at most all. The one rule for packed
// keep counts, held on the host (check_kept_seqlens) and, where the counts
// live in device memory, by the CUDA kernels (cuda/status.cuh).
REPSHIFT_HD bool kept_count_ok(std::int64_t n, std::int64_t k, std::int64_t protect) {
  const std::int64_t floor_keep = protect < n ? protect : n;
  return k <= n && k >= floor_keep && (n == 0 || k >= 1);
}

namespace detail {

// kept (host memory) against cu_seqlens: kept_count_ok for every sample.
inline void check_kept_seqlens(const char* where, const int* cu_seqlens, const int* kept_cu_seqlens,
                               std::int64_t batch, std::int64_t protect) {
  check_cu_seqlens(where, "kept_cu_seqlens", kept_cu_seqlens, batch);
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t n = seq_length(cu_seqlens, b, 0), k = seq_length(kept_cu_seqlens, b, 0);
    if (!kept_count_ok(n, k, protect)) {
      fail(where, "sample {0} keeps {1} of its {2} tokens: must be in [max(1, min(protect = {3}, {2})), {2}]", b, k, n,
           protect);
    }
  }
}

}  // namespace detail

// Packed layout of an op that selects tokens (select, gather, merge): with cu_seqlens set,
// sample b's tokens are rows [cu_seqlens[b], cu_seqlens[b + 1]) (token
// strides apply, batch strides do not), its kept indices (local to the
// sample) are rows [kept_cu_seqlens[b], kept_cu_seqlens[b + 1]) of
// keep_idx, and `tokens` / `keep` are the longest sample's counts. Both
// arrays live in the executor's memory.
struct PackedRows {
  const int* cu_seqlens = nullptr;
  const int* kept_cu_seqlens = nullptr;

  bool packed() const { return cu_seqlens != nullptr; }
  REPSHIFT_HD std::int64_t tokens_of(std::int64_t b, std::int64_t tokens) const { return seq_length(cu_seqlens, b, tokens); }
  REPSHIFT_HD std::int64_t keep_of(std::int64_t b, std::int64_t keep) const { return seq_length(kept_cu_seqlens, b, keep); }
  // Element offset of sample b's first token / first kept index.
  REPSHIFT_HD std::int64_t token_offset(std::int64_t b, std::int64_t batch_stride, std::int64_t token_stride) const {
    return cu_seqlens ? std::int64_t(cu_seqlens[b]) * token_stride : b * batch_stride;
  }
  REPSHIFT_HD std::int64_t keep_offset(std::int64_t b, std::int64_t batch_stride, std::int64_t token_stride) const {
    return kept_cu_seqlens ? std::int64_t(kept_cu_seqlens[b]) * token_stride : b * batch_stride;
  }
  // `tokens` / `keep`: padded, every sample's count, at least 1; packed, a
  // bound of the samples' counts, 0 when every sample is empty (as an
  // empty sample is allowed beside others).
  void require_count(const char* where, const char* name, std::int64_t value) const {
    if (packed()) {
      detail::require_non_negative(where, name, value);
    } else {
      detail::require_positive(where, name, value);
    }
  }
  void check_pointers(const char* where) const {
    if (cu_seqlens) detail::require_pointer(where, "kept_cu_seqlens", kept_cu_seqlens);
    if (kept_cu_seqlens) detail::require_pointer(where, "cu_seqlens", cu_seqlens);
  }
  // The contents, against the longest counts `tokens` and `keep`; host
  // memory only (the CPU kernels call it).
  void check_host(const char* where, std::int64_t batch, std::int64_t tokens, std::int64_t keep,
                  std::int64_t protect) const {
    if (!cu_seqlens) return;
    detail::check_cu_seqlens(where, "cu_seqlens", cu_seqlens, batch);
    detail::check_kept_seqlens(where, cu_seqlens, kept_cu_seqlens, batch, protect);
    for (std::int64_t b = 0; b < batch; ++b) {
      detail::require_at_most(where, "a sample's tokens (cu_seqlens)", tokens_of(b, 0), "tokens", tokens);
      detail::require_at_most(where, "a sample's keep count (kept_cu_seqlens)", keep_of(b, 0), "keep", keep);
    }
  }
};

// Longest sample of cu_seqlens (host memory).
inline int max_seqlen(const int* cu_seqlens, std::int64_t batch) {
  int longest = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const int n = cu_seqlens[b + 1] - cu_seqlens[b];
    longest = n > longest ? n : longest;
  }
  return longest;
}

// cu_seqlens of samples of `lengths` (host memory), [batch + 1]. A total
// past INT_MAX is refused: the offsets are int, as in FlashAttention's varlen.
inline std::vector<int> cu_seqlens_of(const int* lengths, int batch) {
  detail::require_non_negative("cu_seqlens_of", "batch", batch);
  if (batch > 0) detail::require_pointer("cu_seqlens_of", "lengths", lengths);
  std::vector<int> cu(std::size_t(batch) + 1, 0);
  for (int b = 0; b < batch; ++b) {
    if (lengths[b] < 0) detail::fail("cu_seqlens_of", "lengths[{}] = {} is negative", b, lengths[b]);
    if (__builtin_add_overflow(cu[std::size_t(b)], lengths[b], &cu[std::size_t(b) + 1])) {
      detail::fail("cu_seqlens_of", "the lengths of samples 0..{} add up past INT_MAX ({}), the int offsets' limit", b,
                   std::numeric_limits<int>::max());
    }
  }
  return cu;
}

// kept_cu_seqlens for a per-sample keep rule: sample b of n tokens keeps
// keep(n) (e.g. [&](int n) { return schedule.keep_at(layer, n); }).
template <class KeepRule>
std::vector<int> kept_cu_seqlens(const int* cu_seqlens, int batch, KeepRule&& keep) {
  std::vector<int> kept(std::size_t(batch) + 1, 0);
  for (int b = 0; b < batch; ++b) {
    kept[std::size_t(b) + 1] = kept[std::size_t(b)] + int(keep(cu_seqlens[b + 1] - cu_seqlens[b]));
  }
  return kept;
}

// Host-side plan of one pruning layer over a batch: where each sample's
// input, kept tokens and output rows lie (cu_seqlens each), built once per
// call for padded (uniform) and packed batches alike.
struct TokenPlan {
  std::vector<int> in, kept, out;  // [batch + 1] each
  int batch = 0, max_in = 0, max_kept = 0;
  bool drops = false;  // some sample keeps fewer tokens than it has

  std::int64_t in_rows() const { return in.back(); }
  std::int64_t out_rows() const { return out.back(); }

  // extra = rows a compress appends to a sample that drops tokens (Fuse: 1).
  // cu_seqlens null: `batch` samples of `tokens`, each keeping `keep`;
  // kept_cu_seqlens null: nothing dropped.
  void plan(int batch_, int tokens, int keep, const int* cu_seqlens, const int* kept_cu_seqlens, int extra) {
    batch = batch_;
    in.assign(std::size_t(batch) + 1, 0);
    kept.assign(in.size(), 0);
    out.assign(in.size(), 0);
    max_in = max_kept = 0;
    drops = false;
    for (int b = 0; b < batch; ++b) {
      const int n = cu_seqlens ? cu_seqlens[b + 1] - cu_seqlens[b] : tokens;
      const int k = cu_seqlens ? (kept_cu_seqlens ? kept_cu_seqlens[b + 1] - kept_cu_seqlens[b] : n) : keep;
      const int o = k < n ? k + extra : n;
      in[std::size_t(b) + 1] = in[std::size_t(b)] + n;
      kept[std::size_t(b) + 1] = kept[std::size_t(b)] + k;
      out[std::size_t(b) + 1] = out[std::size_t(b)] + o;
      max_in = n > max_in ? n : max_in;
      max_kept = k > max_kept ? k : max_kept;
      drops = drops || k < n;
    }
  }

  // Every sample goes on with its first token alone, nothing compressed
  // (the rows a class-token head reads after the last block).
  void first_token_only() {
    for (int b = 0; b <= batch; ++b) kept[std::size_t(b)] = out[std::size_t(b)] = b;
    max_kept = batch > 0 ? 1 : 0;
  }
};

}  // namespace repshift
