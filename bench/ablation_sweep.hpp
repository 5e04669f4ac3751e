#pragma once
// The ablation sweep's cases, shared by the CPU (bench_ablation.cpp) and
// CUDA (bench_cuda_ablation.cu) sweeps so their JSON labels match and
// bench/plot_ablation.py reads both: each backbone's unpruned model, then
// every valid (Backbone x Site x Importance x Compress) combination from
// the type lists of api/sweep.hpp at keep rates 0.9, 0.7 and 0.5.

#include <string>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <repshift/models/prune_schedule.hpp>
#include <repshift/api/sweep.hpp>

namespace bench {

inline constexpr double kKeepRates[] = {0.9, 0.7, 0.5};

// "transformer/mlp/l2/prune/0.7", or "transformer/unpruned" for keep 1
// (the keep rate in its shortest form: 0.9, 0.7, 0.5).
template <class Backbone, class Site, class Importance, class Compress>
std::string ablation_label(double keep) {
  if (keep >= 1.0) return fmt::format("{}/unpruned", Backbone::name);
  return fmt::format("{}/{}/{}/{}/{}", Backbone::name, Site::name, Importance::name, Compress::name, keep);
}

// reg(backbone, site, importance, compress, keep) for every case, the
// policies passed as tag objects.
template <class Register>
void for_each_ablation(Register&& reg) {
  namespace P = repshift::policies;
  reg(P::Transformer{}, P::Mlp{}, P::L2{}, P::Prune{}, 1.0);
  reg(P::SsmScan{}, P::BlockOutput{}, P::L2{}, P::Prune{}, 1.0);
  repshift::for_each_combination(repshift::AllBackbones{}, repshift::AllSites{}, repshift::AllImportances{},
                                 repshift::AllCompressions{}, [&](auto b, auto s, auto i, auto c) {
                                   for (double keep : kKeepRates) {
                                     // Merge halves the free tokens at most per layer: lower rates are not a
                                     // policy choice.
                                     using Compress = decltype(c);
                                     if (!repshift::PruneSchedule::paper_layers(1.0 - keep).reachable<Compress>(197, 12)) continue;
                                     reg(b, s, i, c, keep);
                                   }
                                 });
}

// What bench/plot_ablation.py reads from the JSON context: the registry's
// order (interleaved runs arrive shuffled), the batch and the executor.
inline void add_ablation_context(int batch, const std::string& executor) {
  namespace P = repshift::policies;
  benchmark::AddCustomContext("policy_order", P::names_of(P::Backbones{}) + ", " + P::names_of(P::MeasuredSites{}) +
                                                  ", " + P::names_of(P::Importances{}) + ", " +
                                                  P::names_of(P::Compressions{}));
  benchmark::AddCustomContext("batch", std::to_string(batch));
  benchmark::AddCustomContext("executor", executor);
}

}  // namespace bench
