#pragma once
// The few oneDNN calls whose C++ API changed at 3.0, written once for both:
// the project builds against Debian's 2.6/2.7 (libdnnl-dev) and against any
// 3.x (e.g. PyPI's onednn-cpu-gomp, bench/peer/onednn_versions.py). 3.x made
// primitive descriptors from the engine and the operands directly (the
// op descriptors are gone) and dropped the eltwise post-op's scale.

#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_version.h>  // DNNL_VERSION_MAJOR

namespace repshift {
namespace cpu {
namespace onednn {

// A zero desc (memory::desc()) for bias means none.
inline dnnl::matmul::primitive_desc matmul_pd(const dnnl::engine& engine, const dnnl::memory::desc& src,
                                              const dnnl::memory::desc& weights, const dnnl::memory::desc& bias,
                                              const dnnl::memory::desc& dst,
                                              const dnnl::primitive_attr& attr = dnnl::primitive_attr()) {
#if DNNL_VERSION_MAJOR >= 3
  if (bias.is_zero()) return dnnl::matmul::primitive_desc(engine, src, weights, dst, attr);
  return dnnl::matmul::primitive_desc(engine, src, weights, bias, dst, attr);
#else
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias, dst), attr, engine);
#endif
}

// Forward-inference direct 2-D convolution, the same stride and padding on
// both axes and sides.
inline dnnl::convolution_forward::primitive_desc conv_pd(const dnnl::engine& engine, const dnnl::memory::desc& src,
                                                         const dnnl::memory::desc& weights,
                                                         const dnnl::memory::desc& bias, const dnnl::memory::desc& dst,
                                                         dnnl::memory::dim stride, dnnl::memory::dim pad,
                                                         const dnnl::primitive_attr& attr = dnnl::primitive_attr()) {
  const auto prop = dnnl::prop_kind::forward_inference;
  const auto alg = dnnl::algorithm::convolution_direct;
#if DNNL_VERSION_MAJOR >= 3
  if (bias.is_zero()) {
    return dnnl::convolution_forward::primitive_desc(engine, prop, alg, src, weights, dst, {stride, stride},
                                                     {pad, pad}, {pad, pad}, attr);
  }
  return dnnl::convolution_forward::primitive_desc(engine, prop, alg, src, weights, bias, dst, {stride, stride},
                                                   {pad, pad}, {pad, pad}, attr);
#else
  const dnnl::convolution_forward::desc desc(prop, alg, src, weights, bias, dst, {stride, stride}, {pad, pad},
                                             {pad, pad});
  return dnnl::convolution_forward::primitive_desc(desc, attr, engine);
#endif
}

// post_ops holding one elementwise op (alpha = beta = 0: GELU, ReLU).
inline dnnl::post_ops eltwise_post_op(dnnl::algorithm alg) {
  dnnl::post_ops ops;
#if DNNL_VERSION_MAJOR >= 3
  ops.append_eltwise(alg, 0.0f, 0.0f);
#else
  ops.append_eltwise(1.0f, alg, 0.0f, 0.0f);
#endif
  return ops;
}

}  // namespace onednn
}  // namespace cpu
}  // namespace repshift
