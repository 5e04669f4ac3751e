// math.hpp's functions for one target: included in namespace repshift::cpu
// and again per extra target (simd_targets.hpp), after target/simd.inl.
// No include guard and no #include: the includer provides <cstring>.

// 2^n for integral-valued n in [-126, 127]; a NaN n (from a NaN input,
// which the caller's polynomial already carries) gives 1, as converting
// NaN to an integer is undefined.
inline float pow2i(float n) {
  const std::int32_t bits = ((n == n ? std::int32_t(n) : 0) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return scale;
}

template <class V>
inline V exp_approx(V x) {
  // Clamp to the range where 2^n is a normal float; exp(-87.3) ~ 1.2e-38
  // underflows to a tiny normal, below that the softmax weight is zero
  // anyway. NaN propagates through the comparisons as x stays NaN.
  x = x < -87.3f ? broadcast<V>(-87.3f) : x;
  x = x > 88.0f ? broadcast<V>(88.0f) : x;
  const V n = round_to_integer(x * 1.44269504088896341f);  // round(x / ln2)
  V r = x - n * 0.693359375f;  // ln2 split: hi part is exact in float
  r = r - n * -2.12194440e-4f;
  // e^r on [-ln2/2, ln2/2]
  V p = broadcast<V>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * pow2i(n);
}

// 2^x for x <= 0, the softmax's exponent once its logits are in base 2
// (flash attention): n = round(x), 2^(x - n) by Cephes' exp2f polynomial
// on [-1/2, 1/2] (max rel error ~2e-7), scaled by 2^n. No range reduction
// by ln 2 and no upper clamp: 21 instructions per AVX2 vector in the
// softmax loop against exp_approx's 29. Below -126 (and -inf) it gives
// 2^-126 ~ 1.2e-38; NaN stays NaN.
template <class V>
inline V exp2_nonpositive(V x) {
  x = x < -126.0f ? broadcast<V>(-126.0f) : x;
  const V n = round_to_integer(x);
  const V r = x - n;
  V p = broadcast<V>(kExp2Poly[0]);
  for (int i = 1; i < 7; ++i) p = p * r + kExp2Poly[i];
  return p * pow2i(n);
}

// Abramowitz & Stegun 7.1.26: erf(x) = 1 - t * poly(t) * exp(-x^2),
// t = 1 / (1 + p |x|); odd extension for x < 0.
template <class V>
inline V erf_approx(V x) {
  const V ax = x < 0.0f ? -x : x;
  const V t = 1.0f / (1.0f + 0.3275911f * ax);
  V y = broadcast<V>(1.061405429f);
  y = y * t - 1.453152027f;
  y = y * t + 1.421413741f;
  y = y * t - 0.284496736f;
  y = y * t + 0.254829592f;
  y = 1.0f - y * t * exp_approx(-ax * ax);
  return x < 0.0f ? -y : y;
}

// GELU(x) = x/2 (1 + erf(x / sqrt 2)), the exact form timm's DeiT and BERT use.
template <class V>
inline V gelu(V x) { return 0.5f * x * (1.0f + erf_approx(x * 0.70710678118654752f)); }

// log(x) for positive normal x: x = m 2^e with m folded into
// [sqrt(1/2), sqrt(2)), then log m = 2 atanh(s), s = (m - 1) / (m + 1),
// |s| <= 0.172, as an odd series to s^11.
template <class V>
inline V log_approx(V x) {
  V m;
  V e = split_exponent(x, m);
  const auto high = m > 1.41421356237f;
  m = high ? m * 0.5f : m;
  e = high ? e + 1.0f : e;
  const V s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  V p = broadcast<V>(1.0f / 11.0f);
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return e * 0.693147180559945f + 2.0f * s * p;
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|), the log1p in
// Goldberg's form so that tiny e^-|x| keep their digits. Mamba's delta.
template <class V>
inline V softplus(V x) {
  const V ax = x < 0.0f ? -x : x;
  const V y = exp_approx(-ax);  // in (0, 1]
  V u = 1.0f + y;
  keep_as_written(u);  // else d folds to y, and a tiny softplus to 0
  const V d = u - 1.0f;
  const V log1p = d == 0.0f ? y : log_approx(u) * (y / (d == 0.0f ? broadcast<V>(1.0f) : d));
  return (x > 0.0f ? x : broadcast<V>(0.0f)) + log1p;
}

// SiLU(x) = x sigmoid(x), Mamba's activation and gate.
template <class V>
inline V silu(V x) { return x / (1.0f + exp_approx(-x)); }
