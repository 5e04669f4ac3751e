#pragma once
// Dense layers on oneDNN's matmul with prepacked weights, where the build
// has oneDNN (REPSHIFT_HAS_ONEDNN): y [rows, n] = x [rows, k] . W^T + bias,
// W stored [n, k] as in PyTorch checkpoints.
//
// OpenBLAS packs W on every call and zeroes C before each product; here W
// is reordered once into the matmul's layout and the bias rides in the
// matmul: 1.1-1.9x OpenBLAS at the DeiT layer shapes on AVX-512, 1.00-1.50x
// on AVX2, where W is read as stored (plan_for; docs/performance.md).
//
// rs::cpu::DenseLayers is one workspace's state (a Workspace keeps one:
// Backend<Host>::Context points to it): primitives per shape, packed
// weights keyed by address. Weights must stay where they are, unchanged,
// while it lives; 16 sampled values are compared on every call, so new
// weights at a freed address are packed again (an edit that misses the
// samples is not seen: the models hold their weights const).
// At most 1024 matrices are kept (then all are dropped and packed anew);
// clear_packed() drops them at once. Primitives, one per row count, are
// kept up to 256 per thread (then made anew).
// Each plan has its own scratchpad (oneDNN's user mode), so workspaces on
// different threads never share one. A primitive runs on the thread count
// it was made for (LibraryThreads: the Host's), so plans are kept per
// thread count too.
//
// DenseMath::Bf16 (rs::Host::dense_math): the weights are packed as
// bfloat16 and each call rounds x to bfloat16 (one reorder into a buffer
// the plan keeps); the matmul accumulates and writes float. Refused on a
// CPU without AVX512-BF16 or AMX, where oneDNN would emulate it slower
// than float. From kMinBandRows rows per thread, a Bf16 call runs as
// bands: each thread one single-threaded matmul over its own rows, in one
// OpenMP region. In a forward, where each layer's weights come cold from
// L3, oneDNN 2.6's own 2-thread split of the AMX matmul left one thread
// waiting a fifth of the time (perf, Emerald Rapids); bands run DeiT-S at
// batch 8 in bf16 1.13x (unpruned) and 1.21x (pruned) as fast there
// (bench/results/ab_bf16_bands_emr_2026-12-05.md). Float gained nothing
// (0.98-1.00x per layer) and keeps oneDNN's split. One layer alone, its
// weights hot in L2 (bench_linear_onednn's BM_DenseLayersBf16 against
// BM_OneDnnPackedBiasBf16), read 1.04-1.55x at 1576 rows in a quiet run
// and below 1x in a noisy one: the bands were judged on whole forwards.
// Rows are independent, so a row's result depends on its band only if
// oneDNN sums K in another order for another row count; oneDNN 2.6 on AMX
// does not (a test checks it bit for bit, and the models' batch
// invariance in bf16).

#include <array>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <tuple>
#include <utility>
#include <string>
#include <unordered_map>
#include <vector>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "onednn_compat.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

class DenseLayers {
 public:
  DenseLayers() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}
  DenseLayers(const DenseLayers&) = delete;
  DenseLayers& operator=(const DenseLayers&) = delete;

  // Whether this CPU multiplies bfloat16 natively (oneDNN's ISA, which
  // ONEDNN_MAX_CPU_ISA can lower).
  static bool bf16_native() {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
    return (isa & bf16) == bf16;
  }
  // The widest of oneDNN's x86 ISA levels that this CPU (and
  // ONEDNN_MAX_CPU_ISA) lets it use, by name.
  static std::string isa_name() {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    using I = dnnl::cpu_isa;
    for (const auto& [level, name] : {std::pair{I::avx512_core_amx, "avx512_core_amx"},
                                      std::pair{I::avx512_core_bf16, "avx512_core_bf16"},
                                      std::pair{I::avx512_core_vnni, "avx512_core_vnni"},
                                      std::pair{I::avx512_core, "avx512_core"}, std::pair{I::avx2_vnni, "avx2_vnni"},
                                      std::pair{I::avx2, "avx2"}, std::pair{I::avx, "avx"}, std::pair{I::sse41, "sse41"}}) {
      if ((isa & static_cast<unsigned>(level)) == static_cast<unsigned>(level)) return name;
    }
    return "below sse41";
  }

  // x rows are ldx floats apart; bias may be null; gelu: y = GELU(x W^T +
  // bias) (exact erf form), fused as the matmul's post-op. Runs on host's
  // threads, multiplying as host.dense_math says.
  void linear(const Host& host, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t k, const float* w,
              const float* bias, std::int64_t n, float* y, bool gelu = false) {
    constexpr const char* where = "cpu::DenseLayers::linear";
    const DenseMath math = dense_math(host, where);
    if (math == DenseMath::Bf16 && !bf16_native()) {
      repshift::detail::fail(where,
                             "dense_math = bf16 needs a CPU with AVX512-BF16 or AMX; oneDNN's ISA here is {}: "
                             "use DenseMath::F32",
                             isa_name());
    }
    repshift::detail::require_positive(where, "k", k);
    repshift::detail::require_positive(where, "n", n);
    if (rows == 0) return;
    const LibraryThreads threads(host);
    // Plans are keyed by rows, so packed batches of ever new lengths would
    // grow them without end: past kMaxPlans per thread (a banded call makes
    // one per thread) they start again, before any plan of this call is taken.
    if (plans_.size() >= kMaxPlans * std::size_t(threads.count())) plans_.clear();
    if (math == DenseMath::Bf16 && threads.count() > 1 && rows >= kMinBandRows * threads.count()) {
      linear_in_bands(math, threads.count(), x, ldx, rows, k, w, bias, n, y, gelu);
      return;
    }
    Plan& plan = plan_for(math, rows, k, n, ldx, bias != nullptr, gelu, threads.count(), 0);
    run(plan, weights_for(plan, w, k, n), x, bias, y, stream_);
  }

  // Drops every packed weight (for callers whose weights are temporaries).
  void clear_packed() { packed_.clear(); }
  // Primitives held: at most kMaxPlans per thread (and one call's more).
  std::size_t plan_count() const { return plans_.size(); }
  static constexpr std::size_t kMaxPlans = 256;  // per thread; a pruned ViT-L forward makes ~20

 private:
  static constexpr int kProbes = 16;
  static constexpr std::size_t kMaxPacked = 1024;  // weight matrices; ViT-H has 130
  // Bands from this many rows per thread (a 197-row layer, DeiT-S at
  // batch 1, ran 0.95-1.01x as bands), aligned to the AMX matmul's 32-row
  // blocks.
  static constexpr std::int64_t kMinBandRows = 256;
  static constexpr std::int64_t kBandAlign = 32;
  using Probe = std::array<float, kProbes>;

  struct Plan {
    dnnl::memory::desc src, dst, bias, weights;
    dnnl::matmul matmul;
    dnnl::memory scratchpad;
    dnnl::reorder round;    // Bf16: x (float) -> rounded
    dnnl::memory rounded;   // Bf16: x as bfloat16, [rows, k]; empty for F32
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

  // y = x W^T (+ bias, GELU) with the plan's matmul on `stream`, x rounded
  // to bfloat16 first where the plan says so.
  void run(Plan& plan, const dnnl::memory& weights, const float* x, const float* bias, float* y,
           dnnl::stream& stream) {
    dnnl::memory src(plan.src, engine_, const_cast<float*>(x));
    if (plan.rounded) {  // x -> bfloat16, into the plan's buffer
      plan.round.execute(stream, src, plan.rounded);
      src = plan.rounded;
    }
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src},
        {DNNL_ARG_WEIGHTS, weights},
        {DNNL_ARG_DST, dnnl::memory(plan.dst, engine_, y)},
        {DNNL_ARG_SCRATCHPAD, plan.scratchpad}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(plan.bias, engine_, const_cast<float*>(bias)));
    plan.matmul.execute(stream, args);
    stream.wait();
  }

  // The banded call (see the top): band b's plan is its own (key `band`),
  // so no two threads share a scratchpad or a rounding buffer. Plans,
  // packed weights and streams are made before the region; inside it each
  // thread only executes, and oneDNN, inside an OpenMP region, runs on the
  // calling thread alone.
  void linear_in_bands(DenseMath math, int bands, const float* x, std::int64_t ldx, std::int64_t rows,
                       std::int64_t k, const float* w, const float* bias, std::int64_t n, float* y, bool gelu) {
    const std::int64_t band_rows = (rows + bands - 1) / bands;
    const std::int64_t per_band = (band_rows + kBandAlign - 1) / kBandAlign * kBandAlign;
    struct Band {
      std::int64_t begin, end;
      Plan* plan;
      dnnl::memory weights;
    };
    std::vector<Band> work;
    {
      const LibraryThreads one(Host{1});  // oneDNN sizes a primitive's split when it is made
      for (int b = 0; b < bands && b * per_band < rows; ++b) {
        const std::int64_t begin = b * per_band, end = std::min(rows, begin + per_band);
        Plan& plan = plan_for(math, end - begin, k, n, ldx, bias != nullptr, gelu, 1, b);
        work.push_back({begin, end, &plan, weights_for(plan, w, k, n)});
      }
    }
    while (band_streams_.size() < work.size()) band_streams_.emplace_back(engine_);
    std::exception_ptr failed;
#pragma omp parallel for schedule(static, 1) num_threads(int(work.size()))
    for (std::size_t b = 0; b < work.size(); ++b) {
      try {  // an exception must not leave the OpenMP region: it would terminate the process
        run(*work[b].plan, work[b].weights, x + work[b].begin * ldx, bias, y + work[b].begin * n, band_streams_[b]);
      } catch (...) {
#pragma omp critical(repshift_dense_bands)
        if (!failed) failed = std::current_exception();
      }
    }
    if (failed) std::rethrow_exception(failed);
  }

  Plan& plan_for(DenseMath math, std::int64_t rows, std::int64_t k, std::int64_t n, std::int64_t ldx,
                 bool with_bias, bool gelu, int threads, int band) {
    const auto key = std::make_tuple(int(math), rows, k, n, ldx, with_bias, gelu, threads, band);
    auto found = plans_.find(key);
    if (found != plans_.end()) return found->second;
    using dnnl::memory;
    const memory::data_type operands = math == DenseMath::Bf16 ? memory::data_type::bf16 : memory::data_type::f32;
    const memory::desc src({rows, k}, memory::data_type::f32, memory::dims{ldx, 1});
    const memory::desc operand_src = math == DenseMath::Bf16 ? memory::desc({rows, k}, operands, memory::format_tag::ab)
                                                             : src;
    const memory::desc dst({rows, n}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc weights_any({k, n}, operands, memory::format_tag::any);
    const memory::desc bias = with_bias ? memory::desc({1, n}, memory::data_type::f32, memory::format_tag::ab)
                                        : memory::desc();
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (gelu) attr.set_post_ops(onednn::eltwise_post_op(dnnl::algorithm::eltwise_gelu_erf));
    dnnl::matmul::primitive_desc pd = onednn::matmul_pd(engine_, operand_src, weights_any, bias, dst, attr);
    // Below AVX-512, oneDNN's matmul is its plain sgemm ("gemm:jit"), which
    // packs nothing ahead and picks W^T row-major for "any": there W as
    // stored ([n, k], i.e. W^T in "ba") runs 0.92-1.73x as fast at the DeiT
    // shapes, 1.13x in the geometric mean, and needs no copy
    // (bench/results/cpu_linear_onednn_avx2_2026-12-03.json).
    if (math == DenseMath::F32 && std::string(pd.impl_info_str()).rfind("gemm", 0) == 0) {
      pd = onednn::matmul_pd(engine_, operand_src, stored_weights(k, n), bias, dst, attr);
    }
    Plan plan{src, dst, bias, pd.weights_desc(), dnnl::matmul(pd), dnnl::memory(pd.scratchpad_desc(), engine_), {}, {}};
    if (math == DenseMath::Bf16) {
      plan.rounded = dnnl::memory(operand_src, engine_);
      plan.round = dnnl::reorder(dnnl::reorder::primitive_desc(engine_, src, engine_, operand_src));
    }
    return plans_.emplace(key, std::move(plan)).first->second;
  }

  // W [n, k] row-major is W^T [k, n] in "ba" order.
  static dnnl::memory::desc stored_weights(std::int64_t k, std::int64_t n) {
    return dnnl::memory::desc({k, n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ba);
  }

  // The weights in the layout the plan wants: W itself where that is the
  // stored layout, else one reorder per layout (row counts may pick
  // different ones), all dropped when the sampled values change.
  dnnl::memory weights_for(const Plan& plan, const float* w, std::int64_t k, std::int64_t n) {
    const dnnl::memory::desc stored = stored_weights(k, n);
    if (plan.weights == stored) return dnnl::memory(stored, engine_, const_cast<float*>(w));
    return packed(plan, w, k, n);
  }
  const dnnl::memory& packed(const Plan& plan, const float* w, std::int64_t k, std::int64_t n) {
    const Probe probe = probe_of(w, k * n);
    // A safety net for callers that pass ever new weight buffers: the
    // cache never holds more than kMaxPacked matrices.
    if (packed_.size() >= kMaxPacked && packed_.find(std::make_tuple(w, k, n)) == packed_.end()) packed_.clear();
    std::vector<Packed>& layouts = packed_[std::make_tuple(w, k, n)];
    if (!layouts.empty() && std::memcmp(layouts.front().probe.data(), probe.data(), sizeof probe) != 0) layouts.clear();
    for (const Packed& p : layouts) {
      if (p.desc == plan.weights) return p.memory;
    }
    dnnl::memory source(stored_weights(k, n), engine_, const_cast<float*>(w));
    dnnl::memory target(plan.weights, engine_);
    dnnl::reorder(source, target).execute(stream_, source, target);
    stream_.wait();
    layouts.push_back({plan.weights, target, probe});
    return layouts.back().memory;
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::vector<dnnl::stream> band_streams_;  // one per band of a banded call
  // (math, rows, k, n, ldx, bias, GELU, threads, band) -> plan
  std::map<std::tuple<int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, bool, int, int>, Plan> plans_;
  std::map<std::tuple<const float*, std::int64_t, std::int64_t>, std::vector<Packed>> packed_;
};

}  // namespace cpu
}  // namespace repshift
