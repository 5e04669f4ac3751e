#pragma once
// Channels-last (NHWC) convolutions on the CPU through oneDNN, for the
// CnnRows backbone's NHWC path: on this project's machine oneDNN's NHWC
// kernels run the ResNet-50 convolutions 1.4-2x faster than im2col + BLAS
// on NCHW (bench/bench_conv_onednn.cpp). Needs oneDNN 2.x (Debian's
// libdnnl-dev) or 3.x (REPSHIFT_HAS_ONEDNN, set by CMake where it is found).
//
// rs::cpu::OneDnnConv keeps one primitive per shape and the weights
// reordered once into the layout the primitive wants, keyed by the
// weights' address: weights must not change while it lives (call clear()
// if they do). ReLU is a fused post-op; the bias is the primitive's own.
// A primitive runs on the thread count it was made for (LibraryThreads:
// Host's), so plans are kept per thread count too. Each plan owns its
// scratchpad (oneDNN's user mode): with the library's default mode, a
// oneDNN built without DNNL_ENABLE_CONCURRENT_EXEC shares one per thread
// and ties a primitive to the thread that made it.

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>

#include "../params/conv2d.hpp"
#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "onednn_compat.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

class OneDnnConv {
 public:
  OneDnnConv() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  // y [B, Ho, Wo, out_channels] = conv(x [B, H, W, in_channels]) (+ bias, ReLU);
  // weight is PyTorch's [out, in, k, k].
  template <ConvEpilogue Epilogue>
  void conv2d_nhwc(const Host& host, const Conv2dShape& s, const float* x, std::int64_t batch, std::int64_t H,
                   std::int64_t W, const float* weight, const float* bias, float* y) {
    s.check_call("cpu::OneDnnConv::conv2d_nhwc", batch, H, W, x, weight, bias, Epilogue != ConvEpilogue::None, "y", y);
    const LibraryThreads threads(host);
    Plan& plan = plan_for(s, batch, H, W, Epilogue, threads.count());
    const dnnl::memory& weights = packed_weights(plan, s, weight);
    dnnl::memory src(plan.src, engine_, const_cast<float*>(x));
    dnnl::memory dst(plan.dst, engine_, y);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, plan.scratchpad}};
    if (Epilogue != ConvEpilogue::None) args.emplace(DNNL_ARG_BIAS, dnnl::memory(plan.bias, engine_, const_cast<float*>(bias)));
    plan.conv.execute(stream_, args);
    stream_.wait();
  }

  void clear() {
    plans_.clear();
  }

 private:
  struct Plan {
    dnnl::memory::desc src, dst, bias, weights;
    dnnl::convolution_forward conv;
    dnnl::memory scratchpad;
    std::map<const float*, dnnl::memory> packed;  // reordered weights by source address
  };
  using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                         std::int64_t, std::int64_t, int, int>;

  Plan& plan_for(const Conv2dShape& s, std::int64_t B, std::int64_t H, std::int64_t W, ConvEpilogue epilogue,
                 int threads) {
    const Key key{s.in_channels, s.out_channels, s.kernel, s.stride, s.pad, B, H, W, int(epilogue), threads};
    auto found = plans_.find(key);
    if (found != plans_.end()) return *found->second;
    using dnnl::memory;
    using tag = memory::format_tag;
    const memory::dim Ho = s.out_size(H), Wo = s.out_size(W);
    auto md = [](const memory::dims& d, tag t) { return memory::desc(d, memory::data_type::f32, t); };
    const memory::desc src = md({B, s.in_channels, H, W}, tag::nhwc), dst = md({B, s.out_channels, Ho, Wo}, tag::nhwc);
    const memory::desc weights_any = md({s.out_channels, s.in_channels, s.kernel, s.kernel}, tag::any);
    const memory::desc bias = md({s.out_channels}, tag::x);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (epilogue == ConvEpilogue::BiasRelu) attr.set_post_ops(onednn::eltwise_post_op(dnnl::algorithm::eltwise_relu));
    const dnnl::convolution_forward::primitive_desc pd = onednn::conv_pd(
        engine_, src, weights_any, epilogue == ConvEpilogue::None ? memory::desc() : bias, dst, s.stride, s.pad, attr);
    auto plan = std::make_unique<Plan>(Plan{pd.src_desc(), pd.dst_desc(), bias, pd.weights_desc(),
                                            dnnl::convolution_forward(pd),
                                            dnnl::memory(pd.scratchpad_desc(), engine_), {}});
    if (plan->src != src || plan->dst != dst) {
      repshift::detail::fail("cpu::OneDnnConv", "oneDNN picked a non-NHWC activation layout for a {}x{} conv", s.kernel,
                             s.kernel);
    }
    return *plans_.emplace(key, std::move(plan)).first->second;
  }

  const dnnl::memory& packed_weights(Plan& plan, const Conv2dShape& s, const float* weight) {
    auto found = plan.packed.find(weight);
    if (found != plan.packed.end()) return found->second;
    using dnnl::memory;
    const memory::desc oihw({s.out_channels, s.in_channels, s.kernel, s.kernel}, memory::data_type::f32,
                            memory::format_tag::oihw);
    memory source(oihw, engine_, const_cast<float*>(weight));
    memory packed(plan.weights, engine_);
    dnnl::reorder(source, packed).execute(stream_, source, packed);
    stream_.wait();
    return plan.packed.emplace(weight, std::move(packed)).first->second;
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace cpu
}  // namespace repshift
