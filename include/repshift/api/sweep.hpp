#pragma once
// Compile-time sweeps over policy combinations. The standard lists are the
// registry's (policies/registry.hpp); for_each_combination calls f with one
// tag object per policy for every combination a Block accepts
// (policies::valid_combination_v), so a sweep never names a case by hand.
//
//   rs::for_each_combination(rs::AllBackbones{}, rs::AllSites{}, rs::AllImportances{}, rs::AllCompressions{},
//                            [](auto backbone, auto site, auto importance, auto compress) { ... });
//   rs::for_each_combination(rs::AllSites{}, rs::AllImportances{}, rs::AllCompressions{},
//                            [](auto site, auto importance, auto compress) { ... });  // Transformer

#include "../policies/combination.hpp"
#include "../policies/registry.hpp"

namespace repshift {

// The token backbones, the three measured sites, every importance and compress.
using AllBackbones = policies::TokenBackbones;
using AllSites = policies::MeasuredSites;
using AllImportances = policies::Importances;
using AllCompressions = policies::Compressions;

namespace detail {

template <class B, class S, class I, class... Cs, class F>
void for_each_compress(TypeList<Cs...>, F& f) {
  auto one = [&](auto c) {
    if constexpr (policies::valid_combination_v<B, S, I, decltype(c)>) f(B{}, S{}, I{}, c);
  };
  (one(Cs{}), ...);
}

template <class B, class S, class... Is, class CList, class F>
void for_each_importance(TypeList<Is...>, CList c, F& f) {
  (for_each_compress<B, S, Is>(c, f), ...);
}

template <class B, class... Ss, class IList, class CList, class F>
void for_each_site(TypeList<Ss...>, IList i, CList c, F& f) {
  (for_each_importance<B, Ss>(i, c, f), ...);
}

}  // namespace detail

template <class... Bs, class SList, class IList, class CList, class F>
void for_each_combination(TypeList<Bs...>, SList sites, IList importances, CList compressions, F&& f) {
  (detail::for_each_site<Bs>(sites, importances, compressions, f), ...);
}

// The Transformer backbone only: f(site, importance, compress).
template <class SList, class IList, class CList, class F>
void for_each_combination(SList sites, IList importances, CList compressions, F&& f) {
  for_each_combination(TypeList<policies::Transformer>{}, sites, importances, compressions,
                       [&](auto, auto s, auto i, auto c) { f(s, i, c); });
}

}  // namespace repshift
