#pragma once
// Where a model prunes and how much: a list of (layer, keep ratio). Counts
// are multiplicative: a layer keeps floor(ratio x its current token count)
// (policies::keep_count), never fewer than the protected prefix.

#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../policies/compress.hpp"
#include "../policies/select.hpp"

namespace repshift {

struct PruneSchedule {
  std::vector<std::pair<int, double>> layers;  // (0-based layer, keep ratio in (0, 1])
  int protect = 1;                             // leading tokens always kept (CLS)

  static PruneSchedule none() { return {}; }
  // The paper's DeiT layers (1, 4, 7) at any keep ratio.
  static PruneSchedule paper_layers(double keep_ratio) {
    return {{{1, keep_ratio}, {4, keep_ratio}, {7, keep_ratio}}, 1};
  }
  // The paper's DeiT setting: r = 0.2 (keep 0.8) at layers 1, 4 and 7.
  static PruneSchedule paper() { return paper_layers(0.8); }

  // Tokens layer `layer` keeps when it receives `tokens`.
  int keep_at(int layer, int tokens) const {
    for (const auto& [l, ratio] : layers) {
      if (l == layer) return policies::keep_count(tokens, ratio, protect);
    }
    return tokens;
  }

  void check(const char* where, int depth) const {
    detail::require_non_negative(where, "schedule.protect", protect);
    for (const auto& [l, ratio] : layers) {
      if (l < 0 || l >= depth) {
        detail::fail(where, "schedule layer " + std::to_string(l) + " is outside [0, depth = " +
                                std::to_string(depth) + ")");
      }
      if (!(ratio > 0.0 && ratio <= 1.0)) {
        detail::fail(where, "schedule keep ratio " + std::to_string(ratio) + " at layer " + std::to_string(l) +
                                " must be in (0, 1]");
      }
    }
  }

  // True when Compress can realise every layer's keep count (Merge removes
  // at most half of the unprotected tokens per layer; the others any).
  template <class Compress>
  bool reachable(int tokens, int depth) const {
    const std::vector<int> counts = token_counts(tokens, depth, Compress::extra_tokens);
    for (int l = 0; l < depth; ++l) {
      const int keep = keep_at(l, counts[std::size_t(l)]);
      if constexpr (Compress::tracks_sizes) {
        if (keep < counts[std::size_t(l)] && keep < policies::Merge::min_keep(counts[std::size_t(l)], protect)) return false;
      }
    }
    return true;
  }

  // Input token count of every layer, then the final count;
  // extra_tokens = Compress::extra_tokens (1 for Fuse) per pruning layer.
  std::vector<int> token_counts(int tokens, int depth, int extra_tokens = 0) const {
    std::vector<int> counts{tokens};
    for (int l = 0; l < depth; ++l) {
      const int keep = keep_at(l, counts.back());
      counts.push_back(keep < counts.back() ? keep + extra_tokens : keep);
    }
    return counts;
  }
};

}  // namespace repshift
