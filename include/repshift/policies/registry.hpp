#pragma once
// The one list of policies. Everything that enumerates them derives from
// these type lists: the runtime name table (api/dispatch.hpp: with_policies and
// its "is not one of" messages), the sweeps (api/sweep.hpp), and the
// valid-combination rule with its explanation (combination.hpp). A new
// policy is added here and nowhere else.

#include <cstddef>
#include <string>

#include "backbone.hpp"
#include "compress.hpp"
#include "importance.hpp"
#include "metric.hpp"
#include "site.hpp"

namespace repshift {

template <class... Ts>
struct TypeList {
  static constexpr std::size_t size = sizeof...(Ts);
};

namespace policies {

using Backbones = TypeList<Transformer, SsmScan, CnnRows>;
using TokenBackbones = TypeList<Transformer, SsmScan>;  // the token models with_policies builds
using Sites = TypeList<Attention, Mlp, BlockOutput, Update<Attention>, Update<Mlp>>;
using MeasuredSites = TypeList<Attention, Mlp, BlockOutput>;  // one per measured layer F: the sweeps' sites
using Metrics = TypeList<L1, L2, Cosine>;               // the shift metrics (the entry points' Metric)
using Importances = TypeList<L2, L1, Cosine, TokenNorm, Random, ClsAttention, AttentionReceived>;
using Compressions = TypeList<Prune, Fuse, Merge>;

// "a, b, c": the names of a list, for messages.
template <class... Ts>
std::string names_of(TypeList<Ts...>) {
  std::string out;
  ((out += (out.empty() ? "" : ", ") + std::string(Ts::name)), ...);
  return out;
}

}  // namespace policies
}  // namespace repshift
