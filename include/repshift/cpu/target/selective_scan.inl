// The selective scan's and causal convolution's vector bodies for one
// target (selective_scan.hpp): included in namespace repshift::cpu and
// again per extra target (simd_targets.hpp), after target/simd.inl and
// math.inl. No include guard and no #include: the includer provides
// <type_traits> and params/selective_scan.hpp.

namespace detail {

template <class V>
inline V load_lanes(const float* p) {
  if constexpr (std::is_same_v<V, float>) return *p;
  else return loadv(p);
}
template <class V>
inline void store_lanes(float* p, V v) {
  if constexpr (std::is_same_v<V, float>) *p = v;
  else storev(p, v);
}

// One sample, channels [d0, d0 + lanes(V)): the whole recurrence with the
// state in registers. At: [N][D], A transposed and exponentiated.
template <ScanDirection Dir, bool Accumulate, int State, class V>
inline void scan_lanes(const SelectiveScanParams& p, const float* At, std::int64_t b, std::int64_t d0) {
  const int S = State > 0 ? State : int(p.state);
  V h[State > 0 ? State : SelectiveScanParams::kMaxState];
  REPSHIFT_UNROLL for (int n = 0; n < S; ++n) h[n] = broadcast<V>(0.0f);
  const V bias = p.dt_bias ? load_lanes<V>(p.dt_bias + d0) : broadcast<V>(0.0f);
  const V skip = p.D ? load_lanes<V>(p.D + d0) : broadcast<V>(0.0f);
  for (std::int64_t i = 0; i < p.length; ++i) {
    const std::int64_t t = Dir == ScanDirection::Forward ? i : p.length - 1 - i;
    const std::int64_t row = b * p.length + t;
    const V delta = softplus(load_lanes<V>(p.dt + row * p.dt_stride + d0) + bias);
    const V u = load_lanes<V>(p.u + row * p.u_stride + d0);
    const V du = delta * u;
    const float* Bt = p.B + row * p.bc_stride;
    const float* Ct = p.C + row * p.bc_stride;
    V y = skip * u;
    REPSHIFT_UNROLL for (int n = 0; n < S; ++n) {
      h[n] = exp_approx(delta * load_lanes<V>(At + n * p.channels + d0)) * h[n] + du * Bt[n];
      y += h[n] * Ct[n];
    }
    if (p.z) y *= silu(load_lanes<V>(p.z + row * p.z_stride + d0));
    y *= p.out_scale;
    float* o = p.out + row * p.out_stride + d0;
    store_lanes<V>(o, Accumulate ? load_lanes<V>(o) + y : y);
  }
}

template <ScanDirection Dir, class V>
inline void conv_lanes(const CausalConvParams& p, const float* wt, std::int64_t b, std::int64_t t, std::int64_t d) {
  const std::int64_t K = p.kernel;
  V acc = p.bias ? load_lanes<V>(p.bias + d) : broadcast<V>(0.0f);
  for (std::int64_t k = 0; k < K; ++k) {
    // Forward: taps t-K+1 .. t (causal); Backward: t .. t+K-1, mirrored.
    const std::int64_t src = Dir == ScanDirection::Forward ? t + k - (K - 1) : t - k + (K - 1);
    if (src < 0 || src >= p.length) continue;
    acc += load_lanes<V>(wt + k * p.channels + d) * load_lanes<V>(p.x + (b * p.length + src) * p.x_stride + d);
  }
  store_lanes<V>(p.out + (b * p.length + t) * p.out_stride + d, silu(acc));
}

}  // namespace detail

// This copy's entries for selective_scan and causal_conv1d_silu, found
// through its SimdTarget: channels [d0, d0 + kVec) of sample b (fewer at
// the last block, as scalars), and one token row of the convolution.
template <ScanDirection Dir, bool Accumulate, int State>
inline void scan_block(SimdTarget, const SelectiveScanParams& p, const float* At, std::int64_t b, std::int64_t d0) {
  if (d0 + kVec <= p.channels) {
    detail::scan_lanes<Dir, Accumulate, State, vfloat>(p, At, b, d0);
  } else {
    for (std::int64_t d = d0; d < p.channels; ++d) detail::scan_lanes<Dir, Accumulate, State, float>(p, At, b, d);
  }
}

template <ScanDirection Dir>
inline void conv_row(SimdTarget, const CausalConvParams& p, const float* wt, std::int64_t row) {
  const std::int64_t b = row / p.length, t = row % p.length;
  std::int64_t d = 0;
  for (; d + kVec <= p.channels; d += kVec) detail::conv_lanes<Dir, vfloat>(p, wt, b, t, d);
  for (; d < p.channels; ++d) detail::conv_lanes<Dir, float>(p, wt, b, t, d);
}
