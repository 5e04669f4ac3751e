#pragma once
// Dense layers on oneDNN's matmul with prepacked weights, where the build
// has oneDNN (REPSHIFT_HAS_ONEDNN): y [rows, n] = x [rows, k] . W^T + bias,
// W stored [n, k] as in PyTorch checkpoints.
//
// OpenBLAS packs W into its panel layout on every call and zeroes C before
// each product; here W is reordered once into the layout the matmul wants
// and kept, and the bias rides in the matmul. Measured side by side at
// every DeiT-S/B layer shape (bench/bench_linear_onednn.cpp, 2 threads,
// AVX-512): 196-223 GFLOP/s against OpenBLAS's 106-191, 1.1-1.9x, most at
// batch 1 and on pruned row counts.
//
// rs::cpu::DenseLayers is one workspace's state (a Workspace keeps one:
// Backend<Host>::Context points to it): primitives per shape, packed
// weights keyed by address. Weights must stay where they are while it
// lives; a set of sampled values is compared on every call, so weights
// rewritten in place (or new ones at a freed address) are packed again.
// Each plan has its own scratchpad (oneDNN's user mode), so workspaces on
// different threads never share one.

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace repshift {
namespace cpu {

class DenseLayers {
 public:
  DenseLayers() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}
  DenseLayers(const DenseLayers&) = delete;
  DenseLayers& operator=(const DenseLayers&) = delete;

  // x rows are ldx floats apart; bias may be null.
  void linear(const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t k, const float* w, const float* bias,
              std::int64_t n, float* y) {
    if (rows == 0) return;
    Plan& plan = plan_for(rows, k, n, ldx, bias != nullptr);
    const dnnl::memory& weights = packed(plan, w, k, n);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(plan.src, engine_, const_cast<float*>(x))},
        {DNNL_ARG_WEIGHTS, weights},
        {DNNL_ARG_DST, dnnl::memory(plan.dst, engine_, y)},
        {DNNL_ARG_SCRATCHPAD, plan.scratchpad}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(plan.bias, engine_, const_cast<float*>(bias)));
    plan.matmul.execute(stream_, args);
    stream_.wait();
  }

 private:
  static constexpr int kProbes = 16;
  using Probe = std::array<float, kProbes>;

  struct Plan {
    dnnl::memory::desc src, dst, bias, weights;
    dnnl::matmul matmul;
    dnnl::memory scratchpad;
  };
  struct Packed {
    dnnl::memory::desc desc;
    dnnl::memory memory;
    Probe probe;
  };

  static Probe probe_of(const float* w, std::int64_t count) {
    Probe p;
    for (int i = 0; i < kProbes; ++i) p[std::size_t(i)] = w[(count - 1) * i / (kProbes - 1)];
    return p;
  }

  Plan& plan_for(std::int64_t rows, std::int64_t k, std::int64_t n, std::int64_t ldx, bool with_bias) {
    const auto key = std::make_tuple(rows, k, n, ldx, with_bias);
    auto found = plans_.find(key);
    if (found != plans_.end()) return found->second;
    using dnnl::memory;
    const memory::desc src({rows, k}, memory::data_type::f32, memory::dims{ldx, 1});
    const memory::desc dst({rows, n}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc weights_any({k, n}, memory::data_type::f32, memory::format_tag::any);
    const memory::desc bias = with_bias ? memory::desc({1, n}, memory::data_type::f32, memory::format_tag::ab)
                                        : memory::desc();
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights_any, bias, dst), attr, engine_);
    Plan plan{src, dst, bias, pd.weights_desc(), dnnl::matmul(pd), dnnl::memory(pd.scratchpad_desc(), engine_)};
    return plans_.emplace(key, std::move(plan)).first->second;
  }

  // W [n, k] row-major is W^T [k, n] in "ba" order: one reorder per
  // layout a plan wants (row counts may pick different ones), all dropped
  // when the sampled values change.
  const dnnl::memory& packed(const Plan& plan, const float* w, std::int64_t k, std::int64_t n) {
    const Probe probe = probe_of(w, k * n);
    std::vector<Packed>& layouts = packed_[std::make_tuple(w, k, n)];
    if (!layouts.empty() && std::memcmp(layouts.front().probe.data(), probe.data(), sizeof probe) != 0) layouts.clear();
    for (const Packed& p : layouts) {
      if (p.desc == plan.weights) return p.memory;
    }
    const dnnl::memory::desc stored({k, n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ba);
    dnnl::memory source(stored, engine_, const_cast<float*>(w));
    dnnl::memory target(plan.weights, engine_);
    dnnl::reorder(source, target).execute(stream_, source, target);
    stream_.wait();
    layouts.push_back({plan.weights, target, probe});
    return layouts.back().memory;
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool>, Plan> plans_;
  std::map<std::tuple<const float*, std::int64_t, std::int64_t>, std::vector<Packed>> packed_;
};

}  // namespace cpu
}  // namespace repshift
