#pragma once
// The one runtime -> template table of the library. Command-line or config
// names map to policy tag objects here, and nowhere else: kernels and
// blocks only ever see types.
//
//   rs::with_policies("mlp", "l2", "prune", [&](auto site, auto importance, auto compress) {
//     rs::VisionTransformer<decltype(site), decltype(importance), decltype(compress)> model(weights);
//   });                                                       // exactly one instantiation
//
//   rs::with_policies("ssm_scan", "block", "l2", "prune", [&](auto backbone, auto site, auto importance,
//                                                           auto compress) { ... });
//
// A name outside the table, or a combination no Block accepts (cls_attn
// away from the attention site, an SsmScan site other than block), throws
// InvalidArgument naming it; such a combination is never instantiated (a
// Block static_asserts on it).

#include <string>
#include <string_view>
#include <type_traits>

#include "error.hpp"
#include "policies/backbone.hpp"
#include "policies/combination.hpp"
#include "policies/compress.hpp"
#include "policies/importance.hpp"
#include "policies/metric.hpp"
#include "policies/site.hpp"

namespace repshift {

inline constexpr const char* kBackboneNames = "transformer, ssm_scan";
inline constexpr const char* kSiteNames = "attn, mlp, block, attn_update, mlp_update";
inline constexpr const char* kMetricNames = "l1, l2, cosine";
inline constexpr const char* kImportanceNames = "l1, l2, cosine, norm, random, cls_attn";
inline constexpr const char* kCompressNames = "prune, fuse, merge";

template <class F>
decltype(auto) with_backbone(std::string_view name, F&& f) {
  if (name == policies::Transformer::name) return f(policies::Transformer{});
  if (name == policies::SsmScan::name) return f(policies::SsmScan{});
  detail::fail("with_backbone", "backbone = '" + std::string(name) + "' is not one of " + kBackboneNames);
}

template <class F>
decltype(auto) with_site(std::string_view name, F&& f) {
  if (name == policies::Attention::name) return f(policies::Attention{});
  if (name == policies::Mlp::name) return f(policies::Mlp{});
  if (name == policies::Block::name) return f(policies::Block{});
  if (name == policies::Update<policies::Attention>::name) return f(policies::Update<policies::Attention>{});
  if (name == policies::Update<policies::Mlp>::name) return f(policies::Update<policies::Mlp>{});
  detail::fail("with_site", "site = '" + std::string(name) + "' is not one of " + kSiteNames);
}

// The shift metrics alone (the entry points' Metric), without the baselines.
template <class F>
decltype(auto) with_metric(std::string_view name, F&& f) {
  if (name == policies::L1::name) return f(policies::L1{});
  if (name == policies::L2::name) return f(policies::L2{});
  if (name == policies::Cosine::name) return f(policies::Cosine{});
  detail::fail("with_metric", "metric = '" + std::string(name) + "' is not one of " + kMetricNames);
}

template <class F>
decltype(auto) with_importance(std::string_view name, F&& f) {
  if (name == policies::L1::name) return f(policies::L1{});
  if (name == policies::L2::name) return f(policies::L2{});
  if (name == policies::Cosine::name) return f(policies::Cosine{});
  if (name == policies::Norm::name) return f(policies::Norm{});
  if (name == policies::Random::name) return f(policies::Random{});
  if (name == policies::ClsAttention::name) return f(policies::ClsAttention{});
  detail::fail("with_importance", "importance = '" + std::string(name) + "' is not one of " + kImportanceNames);
}

template <class F>
decltype(auto) with_compress(std::string_view name, F&& f) {
  if (name == policies::Prune::name) return f(policies::Prune{});
  if (name == policies::Fuse::name) return f(policies::Fuse{});
  if (name == policies::Merge::name) return f(policies::Merge{});
  detail::fail("with_compress", "compress = '" + std::string(name) + "' is not one of " + kCompressNames);
}

// f(backbone_tag, site_tag, importance_tag, compress_tag) for the one
// valid combination the names select.
template <class F>
void with_policies(std::string_view backbone, std::string_view site, std::string_view importance,
                   std::string_view compress, F&& f) {
  with_backbone(backbone, [&](auto b) {
    using Backbone = decltype(b);  // named here: inside the inner lambdas b is a capture
    with_site(site, [&](auto s) {
      using Site = decltype(s);
      with_importance(importance, [&](auto i) {
        using Importance = decltype(i);
        with_compress(compress, [&](auto c) {
          using Compress = decltype(c);
          if constexpr (policies::valid_combination_v<Backbone, Site, Importance, Compress>) {
            f(Backbone{}, Site{}, Importance{}, Compress{});
          } else if constexpr (std::is_same_v<Backbone, policies::Transformer>) {
            detail::fail("with_policies", "importance = '" + std::string(importance) +
                                              "' needs the attention map: use site = 'attn', not '" +
                                              std::string(site) + "'");
          } else {
            detail::fail("with_policies", "backbone = '" + std::string(backbone) + "' takes site = 'block', "
                                              "compress = 'prune' and no attention-map importance, not site = '" +
                                              std::string(site) + "', importance = '" + std::string(importance) +
                                              "', compress = '" + std::string(compress) + "'");
          }
        });
      });
    });
  });
}

// The Transformer backbone: f(site_tag, importance_tag, compress_tag).
template <class F>
void with_policies(std::string_view site, std::string_view importance, std::string_view compress, F&& f) {
  with_policies(policies::Transformer::name, site, importance, compress, [&](auto, auto s, auto i, auto c) { f(s, i, c); });
}

// The same with Compress = Prune: f(site_tag, importance_tag).
template <class F>
void with_policies(std::string_view site, std::string_view importance, F&& f) {
  with_policies(site, importance, policies::Prune::name, [&](auto s, auto i, auto) { f(s, i); });
}

}  // namespace repshift
