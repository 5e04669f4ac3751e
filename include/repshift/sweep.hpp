#pragma once
// Compile-time sweeps over policy combinations. The standard lists name
// every policy the library has; for_each_combination calls f with one tag
// object per policy for every combination a Block accepts (the same trait
// the Block's static_assert uses), so a sweep never names a case by hand.
//
//   rs::for_each_combination(rs::AllSites{}, rs::AllImportances{}, rs::AllCompressions{},
//                            [](auto site, auto importance, auto compress) { ... });

#include "policies/compress.hpp"
#include "policies/importance.hpp"
#include "policies/metric.hpp"
#include "policies/site.hpp"

namespace repshift {

template <class... Ts>
struct TypeList {};

using AllSites = TypeList<policies::Attention, policies::Mlp, policies::Block>;
using AllImportances = TypeList<policies::L2, policies::L1, policies::Cosine, policies::Norm, policies::Random,
                                policies::ClsAttention>;
using AllCompressions = TypeList<policies::Prune, policies::Fuse, policies::Merge>;

namespace detail {

template <class S, class I, class... Cs, class F>
void for_each_compress(TypeList<Cs...>, F& f) {
  if constexpr (policies::valid_site_importance_v<S, I>) (f(S{}, I{}, Cs{}), ...);
}

template <class S, class... Is, class CList, class F>
void for_each_importance(TypeList<Is...>, CList c, F& f) {
  (for_each_compress<S, Is>(c, f), ...);
}

}  // namespace detail

template <class... Ss, class IList, class CList, class F>
void for_each_combination(TypeList<Ss...>, IList importances, CList compressions, F&& f) {
  (detail::for_each_importance<Ss>(importances, compressions, f), ...);
}

}  // namespace repshift
