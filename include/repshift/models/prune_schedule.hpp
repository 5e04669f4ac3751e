#pragma once
// Where a model prunes and how much, as the paper states it: a list of
// (layer, drop ratio r). A layer that receives N valid tokens of a sample
// keeps N - floor(r * N) of them (policies::keep_after_drop), counted per
// sample from that sample's own length, so a sample keeps the same tokens
// alone or inside any batch. Counts compound across layers.
//
//   PruneSchedule::paper()   r = 0.2 at blocks 0, 3, 6 (0-based; the paper's
//                            "layers 1, 4, 7" count from 1): DeiT's 197 tokens
//                            enter block 0, 158 enter blocks 1-3, 127 enter
//                            4-6 and 102 enter 7-11.
//   video_retrieval()        r = 0.2 at blocks 0, 1, 2 (UMT retrieval):
//                            2352 tokens of 12 frames -> 1882 -> 1506 -> 1205.
//   video_qa(depth)          r = 0.1 at every block (UMT video QA).
//   every_layer(r, depth)    r at every block.
//   counts({{l, k}, ...})    the count form: a sample keeps min(k, N) tokens.
//
// Protected leading tokens are never dropped. By default (kModelPrefix) the
// model says which: its class token where one leads the sequence (DeiT,
// BERT), none where there is none (UMT's mean-pooled encoder) or where the
// class token is kept wherever it sits (Vim). A rule that would leave a
// sample with no token throws, naming the layer and the sample's length.

#include <algorithm>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../policies/select.hpp"

namespace repshift {

class PruneSchedule {
 public:
  struct Step {
    int layer = 0;
    double drop_ratio = 0.0;  // ratio form: drop floor(r * N) tokens
    int keep = -1;            // count form (>= 0): keep min(keep, N) tokens
  };

  // Leading tokens no layer drops. kModelPrefix, the default, leaves the
  // count to the model, which applies for_model() before using the schedule;
  // on its own (keep_at, token_counts) it counts as one token, a class token.
  static constexpr int kModelPrefix = -1;
  int protect = kModelPrefix;

  PruneSchedule() = default;
  static PruneSchedule none(int protect = kModelPrefix) { return PruneSchedule({}, protect); }
  // (layer, drop ratio) pairs, layers 0-based.
  static PruneSchedule drop(const std::vector<std::pair<int, double>>& layer_ratios, int protect = kModelPrefix) {
    std::vector<Step> steps;
    for (const auto& [layer, ratio] : layer_ratios) steps.push_back({layer, ratio, -1});
    return PruneSchedule(std::move(steps), protect);
  }
  // (layer, keep count) pairs: every sample keeps min(count, its tokens).
  static PruneSchedule counts(const std::vector<std::pair<int, int>>& layer_counts, int protect = kModelPrefix) {
    std::vector<Step> steps;
    for (const auto& [layer, count] : layer_counts) {
      // A negative count would read as the ratio form with r = 0: no pruning, silently.
      if (count < 0) detail::fail("PruneSchedule::counts", "keep count {} at layer {} must be >= 0", count, layer);
      steps.push_back({layer, 0.0, count});
    }
    return PruneSchedule(std::move(steps), protect);
  }
  // The paper's DeiT blocks (0, 3, 6) at any drop ratio.
  static PruneSchedule paper_layers(double drop_ratio, int protect = kModelPrefix) {
    return drop({{0, drop_ratio}, {3, drop_ratio}, {6, drop_ratio}}, protect);
  }
  // The paper's DeiT setting: r = 0.2 at blocks 0, 3 and 6 (197 -> 158 -> 127 -> 102).
  static PruneSchedule paper() { return paper_layers(0.2); }
  // The paper's video settings (UMT): retrieval r = 0.2 at blocks 0, 1 and
  // 2; QA r = 0.1 at every block.
  static PruneSchedule video_retrieval(int protect = kModelPrefix) {
    return drop({{0, 0.2}, {1, 0.2}, {2, 0.2}}, protect);
  }
  // depth has no default: UMT-L is 24 blocks deep, and a default of 12
  // would prune only its first half, without a word.
  static PruneSchedule video_qa(int depth, int protect = kModelPrefix) {
    return every_layer(0.1, depth, protect);
  }
  // r at every one of `depth` blocks (the paper's video QA: r = 0.1).
  static PruneSchedule every_layer(double drop_ratio, int depth, int protect = kModelPrefix) {
    detail::require_non_negative("PruneSchedule::every_layer", "depth", depth);
    std::vector<std::pair<int, double>> steps;
    for (int l = 0; l < depth; ++l) steps.emplace_back(l, drop_ratio);
    return drop(steps, protect);
  }

  const std::vector<Step>& steps() const { return steps_; }
  bool empty() const { return steps_.empty(); }

  // This schedule as a model with `model_prefix` leading tokens to keep
  // runs it: kModelPrefix becomes that count, a number set by hand stays.
  PruneSchedule for_model(int model_prefix) const {
    PruneSchedule s = *this;
    if (s.protect == kModelPrefix) s.protect = model_prefix;
    return s;
  }
  // The protected count these rules use: kModelPrefix counts as one.
  int protected_tokens() const { return protect == kModelPrefix ? 1 : protect; }

  // Tokens layer `layer` keeps of a sample that enters it with `tokens`.
  int keep_at(int layer, int tokens) const {
    for (const Step& s : steps_) {
      if (s.layer != layer) continue;
      const int prefix = protected_tokens();
      if (s.keep >= 0) return std::max(std::min(s.keep, tokens), std::min(prefix, tokens));
      return policies::keep_after_drop(tokens, s.drop_ratio, prefix);
    }
    return tokens;
  }

  void check(const char* where, int depth) const {
    if (protect < 0 && protect != kModelPrefix) {
      detail::fail(where, "schedule.protect = {} must be >= 0 or PruneSchedule::kModelPrefix ({})", protect,
                   kModelPrefix);
    }
    for (const Step& s : steps_) {
      if (s.layer < 0 || s.layer >= depth) {
        detail::fail(where, "schedule layer {} is outside [0, depth = {})", s.layer, depth);
      }
      // keep_at reads the first step of a layer: a second one would be ignored.
      if (std::count_if(steps_.begin(), steps_.end(), [&](const Step& o) { return o.layer == s.layer; }) > 1) {
        detail::fail(where, "schedule has two steps for layer {}", s.layer);
      }
      if (s.keep >= 0) {
        if (s.keep == 0 && protected_tokens() == 0) {
          detail::fail(where, "schedule keep count 0 at layer {} would leave every sample with 0 tokens", s.layer);
        }
        // keep_at would raise it to the prefix: a count the caller did not ask for.
        if (s.keep < protected_tokens()) {
          detail::fail(where, "schedule keep count {} at layer {} is below schedule.protect = {}: protected tokens "
                       "are never dropped", s.keep, s.layer, protected_tokens());
        }
      } else if (!(s.drop_ratio >= 0.0 && s.drop_ratio <= 1.0)) {
        detail::fail(where, "schedule drop ratio {} at layer {} must be in [0, 1]", s.drop_ratio, s.layer);
      }
    }
  }

  // Checks one sample's token count against the schedule: at least the
  // protected prefix, and no layer may leave it empty.
  void check_sample(const char* where, int sample, int tokens, int depth) const {
    if (tokens < protected_tokens()) {
      detail::fail(where, "sample {} has {} tokens, fewer than schedule.protect = {}", sample, tokens,
                   protected_tokens());
    }
    int n = tokens;
    for (int l = 0; l < depth; ++l) {
      const int keep = keep_at(l, n);
      if (keep < 1) {
        detail::fail(where, "the schedule leaves sample {} with 0 tokens at layer {} (it enters with {})", sample, l,
                     n);
      }
      n = keep;
    }
  }

  // True when Compress can realise every layer's keep count
  // (Compress::min_keep: Merge removes at most half of the unprotected
  // tokens per layer; Prune and Fuse any).
  template <class Compress>
  bool reachable(int tokens, int depth) const {
    return first_unreachable_layer<Compress>(tokens, depth) < 0;
  }

  // Throws, naming the layer, unless reachable: the models call it before
  // their first layer runs.
  template <class Compress>
  void check_reachable(const char* where, int sample, int tokens, int depth) const {
    const int l = first_unreachable_layer<Compress>(tokens, depth);
    if (l < 0) return;
    const int n = token_counts(tokens, depth, Compress::extra_tokens)[std::size_t(l)];
    detail::fail(where, "the schedule keeps {} of sample {}'s {} tokens at layer {}, but {}: keep >= {}", keep_at(l, n),
                 sample, n, l, Compress::min_keep_reason, Compress::min_keep(n, protected_tokens()));
  }

  // Input token count of every layer, then the final count, for a sample
  // of `tokens`; extra_tokens = Compress::extra_tokens (1 for Fuse) per
  // pruning layer.
  std::vector<int> token_counts(int tokens, int depth, int extra_tokens = 0) const {
    detail::require_non_negative("PruneSchedule::token_counts", "tokens", tokens);
    detail::require_non_negative("PruneSchedule::token_counts", "depth", depth);
    std::vector<int> counts{tokens};
    for (int l = 0; l < depth; ++l) {
      const int keep = keep_at(l, counts.back());
      counts.push_back(keep < counts.back() ? keep + extra_tokens : keep);
    }
    return counts;
  }

 private:
  PruneSchedule(std::vector<Step> steps, int protect_) : protect(protect_), steps_(std::move(steps)) {}

  template <class Compress>
  int first_unreachable_layer(int tokens, int depth) const {
    const std::vector<int> counts = token_counts(tokens, depth, Compress::extra_tokens);
    for (int l = 0; l < depth; ++l) {
      const int n = counts[std::size_t(l)], keep = keep_at(l, n);
      if (keep < n && keep < Compress::min_keep(n, protected_tokens())) return l;
    }
    return -1;
  }

  std::vector<Step> steps_;
};

}  // namespace repshift
