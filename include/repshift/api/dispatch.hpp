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
// The table is the registry's type lists (policies/registry.hpp), matched
// on each policy's `name`. A name outside them, or a combination no Block
// accepts (policies::CombinationRule says why), throws InvalidArgument
// naming it; such a combination is never instantiated.

#include <string_view>
#include <type_traits>

#include "../core/error.hpp"
#include "../policies/combination.hpp"
#include "../policies/registry.hpp"

namespace repshift {
namespace detail {

// f(T{}) for the T of Rest whose name is `name`; All is the whole list,
// for the message.
template <class All, class F, class T, class... Rest>
decltype(auto) with_named(const char* where, const char* kind, std::string_view name, F& f, TypeList<T, Rest...>) {
  if (name == T::name) return f(T{});
  if constexpr (sizeof...(Rest) > 0) {
    return with_named<All>(where, kind, name, f, TypeList<Rest...>{});
  } else {
    fail(where, "{} = '{}' is not one of {}", kind, name, policies::names_of(All{}));
  }
}

}  // namespace detail

template <class F>
decltype(auto) with_backbone(std::string_view name, F&& f) {
  return detail::with_named<policies::TokenBackbones>("with_backbone", "backbone", name, f, policies::TokenBackbones{});
}
template <class F>
decltype(auto) with_site(std::string_view name, F&& f) {
  return detail::with_named<policies::Sites>("with_site", "site", name, f, policies::Sites{});
}
// The shift metrics alone (the entry points' Metric), without the baselines.
template <class F>
decltype(auto) with_metric(std::string_view name, F&& f) {
  return detail::with_named<policies::Metrics>("with_metric", "metric", name, f, policies::Metrics{});
}
template <class F>
decltype(auto) with_importance(std::string_view name, F&& f) {
  return detail::with_named<policies::Importances>("with_importance", "importance", name, f, policies::Importances{});
}
template <class F>
decltype(auto) with_compress(std::string_view name, F&& f) {
  return detail::with_named<policies::Compressions>("with_compress", "compress", name, f, policies::Compressions{});
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
          using Rule = policies::CombinationRule<Backbone, Site, Importance, Compress>;
          if constexpr (Rule::why_not == nullptr) {
            f(Backbone{}, Site{}, Importance{}, Compress{});
          } else {
            detail::fail("with_policies",
                         "backbone = '{}', site = '{}', importance = '{}', compress = '{}' is not a valid "
                         "combination: {}",
                         backbone, site, importance, compress, Rule::why_not);
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
