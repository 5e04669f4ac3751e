// Flash attention and the map-returning plain path against a naive
// double-precision softmax attention. Flash runs once per vector copy
// this binary has and this CPU runs (cpu_targets(), test_support.hpp).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <repshift/cpu/attention.hpp>

#include "reference_transformer.hpp"
#include "test_support.hpp"

namespace rs = repshift;

namespace {

// Each probability within a relative bound of its reference: the absolute
// bound of expect_close leaves the small ones of a long row (2.4e-4 on
// average at 4097 keys, most far below) unchecked.
void expect_probabilities_close(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-4 * want[i] + 1e-9) << "probability " << i;
  }
}

struct Case {
  int batch, tokens, heads, head_dim;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << "B" << c.batch << " N" << c.tokens << " H" << c.heads << " Dh" << c.head_dim;
}

void expect_close(const std::vector<float>& got, const ref::Mat& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(ref::max_rel_error(got, want), tol) << what;
}

}  // namespace

// The flash softmax's base-2 exponential against libm: relative error over
// the float steps of [-126, 0], 2^-126 below (and at -inf), NaN kept, and
// the vector lanes equal to the scalar form.
TEST(AttentionMath, Exp2NonpositiveMatchesLibm) {
  double worst = 0;
  for (float x = -126.0f; x <= 0.0f; x += 0.0137f) {
    const double want = std::exp2(double(x));
    worst = ref::worse(worst, std::abs(rs::cpu::exp2_nonpositive(x) - want) / want);
#if !defined(REPSHIFT_TEST_FAST_MATH)  // reassociation may order the two forms differently
    ASSERT_EQ(rs::cpu::exp2_nonpositive(rs::cpu::broadcast<rs::cpu::vfloat>(x))[0], rs::cpu::exp2_nonpositive(x));
#endif
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(rs::cpu::exp2_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(rs::cpu::exp2_nonpositive(-1.0f), 0.5f);
  EXPECT_EQ(rs::cpu::exp2_nonpositive(-200.0f), std::ldexp(1.0f, -126));
  EXPECT_EQ(rs::cpu::exp2_nonpositive(-INFINITY), std::ldexp(1.0f, -126));
  EXPECT_TRUE(std::isnan(rs::cpu::exp2_nonpositive(NAN)));
}

class Attention : public ::testing::TestWithParam<Case> {};

TEST_P(Attention, FlashAndPlainMatchNaiveSoftmax) {
  const Case c = GetParam();
  const int dim = c.heads * c.head_dim;
  const std::size_t rows = std::size_t(c.batch) * c.tokens;
  // Spread 3 makes the softmax peaky: the online rescaling has work to do.
  const auto qkv = ref::random_floats(rows * 3 * dim, 31 + c.tokens, -3.0f, 3.0f);
  const auto bias = ref::random_floats(3 * dim, 7, -0.5f, 0.5f);
  ref::Mat qkv_biased(qkv.size());
  for (std::size_t i = 0; i < qkv.size(); ++i) qkv_biased[i] = double(qkv[i]) + bias[i % (3 * dim)];
  std::vector<double> want_probs;
  const ref::Mat want = ref::attention(qkv_biased, c.batch, c.tokens, c.heads, c.head_dim, &want_probs);

  std::vector<float> flash(rows * dim, NAN), plain(rows * dim, NAN);
  std::vector<float> probs(std::size_t(c.batch) * c.heads * c.tokens * c.tokens, NAN);
  auto p = rs::AttentionParams::contiguous(qkv.data(), bias.data(), flash.data(), c.batch, c.tokens, c.heads,
                                           c.head_dim);
  for (const auto isa : cpu_targets()) {
    std::fill(flash.begin(), flash.end(), NAN);
    rs::cpu::flash_attention(rs::Host{}, p, isa);
    expect_close(flash, want, 2e-5, rs::cpu::to_string(isa));
  }

  p.out = plain.data();
  rs::cpu::attention_with_map(rs::Host{}, p, probs.data());
  expect_close(plain, want, 2e-5, "plain");
  // Logits reach ~20 here; float rounding of a logit moves p by ~1e-6.
  expect_close(probs, want_probs, 1e-5, "probabilities");
  expect_probabilities_close(probs, want_probs);
}

INSTANTIATE_TEST_SUITE_P(TokenCounts, Attention,
                         ::testing::Values(Case{2, 1, 2, 64}, Case{2, 7, 3, 64}, Case{2, 197, 6, 64},
                                           Case{1, 577, 2, 64}, Case{1, 1025, 1, 64}, Case{1, 50, 2, 40},
                                           Case{1, 33, 1, 3},
                                           // The largest sequence taken as one key block, and one past it.
                                           Case{1, 256, 2, 64}, Case{1, 257, 2, 64},
                                           // Video lengths (UMT-B, 12 frames: 2352; one past a
                                           // power of two): many key tiles, a ragged last one.
                                           Case{1, 2352, 1, 32}, Case{1, 4097, 1, 8}),
                         [](const auto& info) {
                           return "N" + std::to_string(info.param.tokens) + "_H" + std::to_string(info.param.heads) +
                                  "_D" + std::to_string(info.param.head_dim);
                         });

// key_bias (ToMe's proportional attention: log token size) shifts every
// query's logit for that key, in both paths, fixed and generic head sizes.
TEST(AttentionKeyBias, AddsToTheLogitsOfEachKey) {
  for (const Case c : {Case{2, 197, 3, 64}, Case{1, 70, 2, 40}}) {
    const int dim = c.heads * c.head_dim;
    const std::size_t rows = std::size_t(c.batch) * c.tokens;
    const auto qkv = ref::random_floats(rows * 3 * dim, 41, -2.0f, 2.0f);
    const auto key_bias = ref::random_floats(rows, 42, 0.0f, 2.5f);
    const std::vector<double> bias_d(key_bias.begin(), key_bias.end());
    std::vector<double> want_probs;
    const ref::Mat want = ref::attention(ref::Mat(qkv.begin(), qkv.end()), c.batch, c.tokens, c.heads, c.head_dim,
                                         &want_probs, &bias_d);
    std::vector<float> flash(rows * dim, NAN), plain(rows * dim, NAN);
    std::vector<float> probs(std::size_t(c.batch) * c.heads * c.tokens * c.tokens, NAN);
    auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, flash.data(), c.batch, c.tokens, c.heads,
                                             c.head_dim);
    p.key_bias = key_bias.data();
    for (const auto isa : cpu_targets()) {
      std::fill(flash.begin(), flash.end(), NAN);
      rs::cpu::flash_attention(rs::Host{}, p, isa);
      expect_close(flash, want, 2e-5, rs::cpu::to_string(isa));
    }
    p.out = plain.data();
    rs::cpu::attention_with_map(rs::Host{}, p, probs.data());
    expect_close(plain, want, 2e-5, "plain");
    expect_close(probs, want_probs, 1e-5, "probabilities");
    expect_probabilities_close(probs, want_probs);
  }
}

// A -inf key_bias masks keys. Sample 0 masks its first 100 of 300 keys:
// whole leading key blocks where the running max stays -inf (no inf - inf
// NaN may appear); sample 1 masks every key, so no query has a softmax:
// NaN on both paths.
TEST(AttentionKeyBias, MinusInfinityMasksKeysOnBothPaths) {
  const int batch = 2, tokens = 300, heads = 2, head_dim = 32, dim = heads * head_dim, masked = 100;
  const std::size_t rows = std::size_t(batch) * tokens;
  const auto qkv = ref::random_floats(rows * 3 * dim, 43, -2.0f, 2.0f);
  auto key_bias = ref::random_floats(rows, 44, -1.0f, 1.0f);
  std::fill(key_bias.begin(), key_bias.begin() + masked, -INFINITY);
  std::fill(key_bias.begin() + tokens, key_bias.end(), -INFINITY);
  // The reference on sample 0 alone (its max is finite).
  const ref::Mat sample0(qkv.begin(), qkv.begin() + std::ptrdiff_t(tokens) * 3 * dim);
  const std::vector<double> bias0(key_bias.begin(), key_bias.begin() + tokens);
  const ref::Mat want = ref::attention(sample0, 1, tokens, heads, head_dim, nullptr, &bias0);
  auto check = [&](const std::vector<float>& out, const std::string& what) {
    EXPECT_LT(ref::max_rel_error(std::vector<float>(out.begin(), out.begin() + std::ptrdiff_t(tokens) * dim), want),
              2e-5) << what;
    EXPECT_TRUE(std::all_of(out.begin() + std::ptrdiff_t(tokens) * dim, out.end(), [](float x) { return std::isnan(x); }))
        << what << ": a query with every key masked";
  };
  std::vector<float> out(rows * dim), probs(std::size_t(batch) * heads * tokens * tokens);
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), batch, tokens, heads, head_dim);
  p.key_bias = key_bias.data();
  for (const auto isa : cpu_targets()) {
    std::fill(out.begin(), out.end(), 0.0f);
    rs::cpu::flash_attention(rs::Host{}, p, isa);
    check(out, rs::cpu::to_string(isa));
  }
  std::fill(out.begin(), out.end(), 0.0f);
  rs::cpu::attention_with_map(rs::Host{}, p, probs.data());
  check(out, "plain");
}

TEST(AttentionErrors, NamesTheArgument) {
  std::vector<float> buf(3 * 64), out(64);
  auto p = rs::AttentionParams::contiguous(buf.data(), nullptr, out.data(), 1, 1, 1, 64);
  p.heads = 0;
  EXPECT_THROW(rs::cpu::flash_attention(rs::Host{}, p), rs::InvalidArgument);
  p.heads = 1;
  p.qkv = nullptr;
  try {
    rs::cpu::flash_attention(rs::Host{}, p);
    ADD_FAILURE();
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("qkv is a null pointer"), std::string::npos) << e.what();
  }
}

// The map path's GEMMs take int leading dimensions: an output stride past
// INT_MAX is refused before anything is written, not narrowed (the flash
// path strides in 64 bits). Nothing is dereferenced past the first row.
TEST(CpuAttention, MapPathRefusesAnOutputStrideItsGemmCannotTake) {
  std::vector<float> qkv(3 * 32), out(32), probs(1);
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), 1, 1, 1, 32);
  p.out_token_stride = (std::int64_t(1) << 32) + 32;
  try {
    rs::cpu::attention_with_map(rs::Host{}, p, probs.data());
    ADD_FAILURE() << "not refused";
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("out_token_stride = 4294967328 must be <= INT_MAX"), std::string::npos)
        << e.what();
  }
}

// Strides that overlap rows, and sizes whose products wrap, are refused
// before a kernel runs, not written through.
TEST(AttentionErrors, OverlappingStridesAndWrappingSizes) {
  const int batch = 2, tokens = 3, heads = 2, head_dim = 8, dim = heads * head_dim;
  std::vector<float> qkv(std::size_t(batch) * tokens * 3 * dim), out(std::size_t(batch) * tokens * dim);
  const auto good = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), batch, tokens, heads, head_dim);
  auto refused = [&](auto change, std::initializer_list<const char*> words) {
    auto p = good;
    change(p);
    expect_refused([&] { rs::cpu::flash_attention(rs::Host{}, p); }, words);
    std::vector<float> probs(std::size_t(batch) * heads * tokens * tokens);
    expect_refused([&] { rs::cpu::attention_with_map(rs::Host{}, p, probs.data()); }, words);
  };
  refused([](auto& p) { p.qkv_token_stride = 5; }, {"3 x heads x head_dim = 48", "qkv_token_stride = 5"});
  refused([](auto& p) { p.out_token_stride = -16; }, {"heads x head_dim = 16", "out_token_stride = -16"});
  refused([](auto& p) { p.out_batch_stride = 40; }, {"output span", "= 48", "out_batch_stride = 40"});
  refused([](auto& p) { p.qkv_batch_stride = -1; }, {"qkv_batch_stride = -1"});
  // 3 x heads x head_dim wraps to 2 in 64-bit arithmetic.
  refused([](auto& p) { p.heads = 6148914691236517206; p.head_dim = 1; }, {"qkv row", "overflows"});
  refused([](auto& p) { p.qkv_token_stride = std::int64_t(1) << 62; }, {"qkv", "overflow"});
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), batch, tokens, std::int64_t(1) << 40,
                                           std::int64_t(1) << 24);
  expect_refused([&] { rs::cpu::flash_attention(rs::Host{}, p); }, {"qkv row", "overflows"});
}

// Packed, `tokens` only bounds the samples: a loose bound (2^36 for two
// samples of 3 and 2) sizes no scratch and gives the tight call's output.
TEST(AttentionPacked, LooseTokenBoundSizesScratchByTheLongestSample) {
  const int heads = 2, head_dim = 8, dim = heads * head_dim, cu[3] = {0, 3, 5};
  const auto qkv = ref::random_floats(std::size_t(5) * 3 * dim, 60);
  std::vector<float> tight(std::size_t(5) * dim), loose(tight.size(), NAN);
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, tight.data(), 2, 3, heads, head_dim);
  p.cu_seqlens = cu;
  rs::cpu::flash_attention(rs::Host{}, p);
  p.tokens = std::int64_t(1) << 36;
  p.out = loose.data();
  rs::cpu::flash_attention(rs::Host{}, p);
  EXPECT_EQ(loose, tight);
}

TEST(AttentionPadding, MaskedKeysEqualTheTruncatedSequence) {
  // Sample 1 has 37 valid tokens of 70: its valid query rows must equal
  // attention over just those 37 tokens, in both paths.
  const int tokens = 70, valid = 37, heads = 2, head_dim = 32, dim = heads * head_dim;
  const auto qkv = ref::random_floats(std::size_t(2) * tokens * 3 * dim, 12, -2.0f, 2.0f);
  const int lengths[2] = {tokens, valid};
  std::vector<float> out(std::size_t(2) * tokens * dim), plain(out.size(), NAN);
  std::vector<float> probs(std::size_t(2) * heads * tokens * tokens, NAN);  // every entry must be written
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), 2, tokens, heads, head_dim);
  p.key_lengths = lengths;
  p.out = plain.data();
  rs::cpu::attention_with_map(rs::Host{}, p, probs.data());

  const float* sample1 = qkv.data() + std::size_t(tokens) * 3 * dim;
  const ref::Mat truncated(sample1, sample1 + std::size_t(valid) * 3 * dim);
  const ref::Mat want = ref::attention(truncated, 1, valid, heads, head_dim);
  auto sample1_rows = [&](const std::vector<float>& all) {
    return std::vector<float>(all.begin() + std::ptrdiff_t(tokens) * dim, all.begin() + std::ptrdiff_t(tokens + valid) * dim);
  };
  // Sample 0, unmasked, is plain attention over all its tokens: a mask
  // taken from the wrong sample would show there.
  const ref::Mat want0 = ref::attention(ref::Mat(qkv.begin(), qkv.begin() + std::ptrdiff_t(tokens) * 3 * dim), 1,
                                        tokens, heads, head_dim);
  auto sample0_rows = [&](const std::vector<float>& all) {
    return std::vector<float>(all.begin(), all.begin() + std::ptrdiff_t(tokens) * dim);
  };
  EXPECT_LT(ref::max_rel_error(sample1_rows(plain), want), 2e-5);
  EXPECT_LT(ref::max_rel_error(sample0_rows(plain), want0), 2e-5);
  p.out = out.data();
  for (const auto isa : cpu_targets()) {
    std::fill(out.begin(), out.end(), NAN);
    rs::cpu::flash_attention(rs::Host{}, p, isa);
    EXPECT_LT(ref::max_rel_error(sample1_rows(out), want), 2e-5) << rs::cpu::to_string(isa);
    EXPECT_LT(ref::max_rel_error(sample0_rows(out), want0), 2e-5) << rs::cpu::to_string(isa);
  }
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < tokens; ++i)
      for (int j = valid; j < tokens; ++j)
        ASSERT_EQ(probs[((std::size_t(1) * heads + h) * tokens + i) * tokens + j], 0.0f);

  int bad[2] = {tokens, 0};
  p.key_lengths = bad;
  EXPECT_THROW(rs::cpu::flash_attention(rs::Host{}, p), rs::InvalidArgument);
}

// Packed samples (cu_seqlens), one longer than a single key block: every
// target gives each sample its attention alone, against the reference.
TEST(AttentionPacked, EveryTargetMatchesEachSampleAlone) {
  const std::vector<int> lengths = {23, 5, 300, 1};
  const int heads = 2, head_dim = 24, dim = heads * head_dim;
  std::vector<int> cu = {0};
  for (int n : lengths) cu.push_back(cu.back() + n);
  const auto qkv = ref::random_floats(std::size_t(cu.back()) * 3 * dim, 17, -3.0f, 3.0f);
  std::vector<float> out(std::size_t(cu.back()) * dim);
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), int(lengths.size()), 300, heads, head_dim);
  p.cu_seqlens = cu.data();
  for (const auto isa : cpu_targets()) {
    std::fill(out.begin(), out.end(), NAN);
    rs::cpu::flash_attention(rs::Host{}, p, isa);
    for (std::size_t b = 0; b < lengths.size(); ++b) {
      const float* first = qkv.data() + std::size_t(cu[b]) * 3 * dim;
      const ref::Mat want = ref::attention(ref::Mat(first, first + std::size_t(lengths[b]) * 3 * dim), 1, lengths[b],
                                           heads, head_dim);
      const std::vector<float> got(out.begin() + std::ptrdiff_t(cu[b]) * dim, out.begin() + std::ptrdiff_t(cu[b + 1]) * dim);
      EXPECT_LT(ref::max_rel_error(got, want), 2e-5) << rs::cpu::to_string(isa) << " sample " << b;
    }
  }
}

// REPSHIFT_MAX_CPU_ISA caps the target flash_attention runs, never below
// what the binary was compiled for nor above what the CPU runs; a value
// that names no target is refused by name.
TEST(CpuIsa, MaxCpuIsaCapsTheTarget) {
  using rs::cpu::CpuIsa;
  const CpuIsa detected = rs::cpu::detected_cpu_isa(), floor = rs::cpu::compiled_cpu_isa();
  for (const auto isa : {CpuIsa::Baseline, CpuIsa::Avx2, CpuIsa::Avx512}) {
    const CpuIsa runs = rs::cpu::runnable_cpu_isa(isa);
    EXPECT_EQ(runs, std::max(floor, std::min(isa, detected))) << rs::cpu::to_string(isa);
    ASSERT_EQ(setenv("REPSHIFT_MAX_CPU_ISA", rs::cpu::to_string(isa), 1), 0);
    EXPECT_EQ(rs::cpu::active_cpu_isa(), runs);
  }
  ASSERT_EQ(setenv("REPSHIFT_MAX_CPU_ISA", "AVX2", 1), 0);  // case does not matter, as for ONEDNN_MAX_CPU_ISA
  EXPECT_EQ(rs::cpu::active_cpu_isa(), rs::cpu::runnable_cpu_isa(CpuIsa::Avx2));
  ASSERT_EQ(setenv("REPSHIFT_MAX_CPU_ISA", "avx", 1), 0);
  std::vector<float> qkv(3 * 8), out(8);
  const auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), 1, 1, 1, 8);
  try {
    rs::cpu::flash_attention(rs::Host{}, p);
    ADD_FAILURE() << "an unknown target ran";
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("REPSHIFT_MAX_CPU_ISA: 'avx' is not baseline, avx2 or avx512"),
              std::string::npos) << e.what();
  }
  ASSERT_EQ(unsetenv("REPSHIFT_MAX_CPU_ISA"), 0);
  EXPECT_EQ(rs::cpu::active_cpu_isa(), rs::cpu::runnable_cpu_isa(CpuIsa::Avx512));
}

// DenseMath::Bf16 on a CPU with AMX: the products on tiles in bfloat16
// (cpu/flash_attention_amx.hpp). Against the double reference on the
// operands the kernel rounds (q after scale x log2 e, k and v after their
// bias), what is left is P's rounding to bfloat16 (2^-9 relative) and the
// float softmax; against the reference on the float operands, the cost of
// bf16 (printed). Head dims the kernel does not take (40) keep the float
// kernel, exactly.
namespace {

double bf16_round(double x) { return rs::to_float(rs::bf16(float(x))); }

// qkv [rows, 3 C] as the AMX kernel rounds it, biases added.
ref::Mat amx_operands(const std::vector<float>& qkv, const std::vector<float>& bias, std::size_t rows, int dim,
                      int head_dim) {
  const double to_log2 = 1.4426950408889634 / std::sqrt(double(head_dim));
  const float scale = float(1.0 / std::sqrt(double(head_dim))) * 1.44269504088896341f;  // as the kernel forms it
  ref::Mat out(qkv.size());
  for (std::size_t r = 0; r < rows; ++r) {
    for (int c = 0; c < 3 * dim; ++c) {
      const std::size_t i = r * 3 * dim + std::size_t(c);
      const float biased = qkv[i] + (bias.empty() ? 0.0f : bias[std::size_t(c)]);
      out[i] = c < dim ? bf16_round(double(biased * scale)) / to_log2 : bf16_round(biased);
    }
  }
  return out;
}

}  // namespace

class AttentionAmx : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionAmx, Bf16TilesMatchTheReferenceOnRoundedOperands) {
  if (!rs::cpu::amx_bf16_usable()) GTEST_SKIP() << "this CPU runs no AMX bf16 tiles";
  const Case c = GetParam();
  const int dim = c.heads * c.head_dim;
  const std::size_t rows = std::size_t(c.batch) * c.tokens;
  const auto qkv = ref::random_floats(rows * 3 * dim, 51 + c.tokens, -2.0f, 2.0f);
  const auto bias = ref::random_floats(3 * dim, 52, -0.5f, 0.5f);
  const auto key_bias = ref::random_floats(rows, 53, -1.0f, 1.0f);
  ref::Mat biased(qkv.size());
  for (std::size_t i = 0; i < qkv.size(); ++i) biased[i] = double(qkv[i]) + bias[i % (3 * dim)];
  const ref::Mat operands = amx_operands(qkv, bias, rows, dim, c.head_dim);
  const std::vector<double> key_bias_d(key_bias.begin(), key_bias.end());
  // Without a key bias (a ViT's attention) and with one (ToMe's log size).
  for (const bool with_key_bias : {false, true}) {
    const std::vector<double>* kb = with_key_bias ? &key_bias_d : nullptr;
    const ref::Mat want = ref::attention(operands, c.batch, c.tokens, c.heads, c.head_dim, nullptr, kb);
    const ref::Mat want_f32 = ref::attention(biased, c.batch, c.tokens, c.heads, c.head_dim, nullptr, kb);
    std::vector<float> out(rows * dim, NAN);
    auto p = rs::AttentionParams::contiguous(qkv.data(), bias.data(), out.data(), c.batch, c.tokens, c.heads,
                                             c.head_dim);
    p.key_bias = with_key_bias ? key_bias.data() : nullptr;
    rs::cpu::flash_attention(rs::Host{0, rs::DenseMath::Bf16}, p);
    if (!rs::cpu::amx_attention_supports(c.head_dim)) {
      expect_close(out, want_f32, 2e-5, "head dim the tiles do not take: the float kernel");
      continue;
    }
    const double rounded = ref::max_rel_error(out, want), vs_f32 = ref::max_rel_error(out, want_f32);
    std::printf("AMX bf16 attention, N %d Dh %d%s: error %.2g against the rounded operands, %.2g against float\n",
                c.tokens, c.head_dim, with_key_bias ? ", key bias" : "", rounded, vs_f32);
    EXPECT_LT(rounded, 4e-3) << "key bias " << with_key_bias;
    EXPECT_LT(vs_f32, 3e-2) << "key bias " << with_key_bias;
    EXPECT_GT(vs_f32, 1e-5) << "key bias " << with_key_bias;  // bf16 really ran
  }
}

// Query counts take each of the kernel's block shapes: whole 32-query
// blocks (512), a last block of 17-31 queries (17, 50, 61, 90, 600, 1300:
// two row tiles, padded) and one of 1-16 (1, 33, 45, 130, 197: one tile).
INSTANTIATE_TEST_SUITE_P(TokenCounts, AttentionAmx,
                         ::testing::Values(Case{2, 197, 6, 64}, Case{2, 1, 2, 64}, Case{3, 33, 1, 32},
                                           Case{1, 50, 2, 96}, Case{1, 130, 1, 128}, Case{2, 17, 4, 16},
                                           Case{1, 90, 2, 48}, Case{1, 61, 1, 80}, Case{1, 45, 1, 112},
                                           Case{1, 70, 2, 40},
                                           // One block up to 512 keys; past it, blocks of 256 and a ragged last one.
                                           Case{1, 512, 1, 64}, Case{1, 600, 2, 128}, Case{1, 1300, 1, 64}),
                         [](const auto& info) {
                           return "N" + std::to_string(info.param.tokens) + "_H" + std::to_string(info.param.heads) +
                                  "_D" + std::to_string(info.param.head_dim);
                         });

// Masked keys (-inf key bias, whole leading blocks of them; a sample with
// every key masked gets NaN) and packed samples, on the tiles.
TEST(AttentionAmx, MasksAndPackedSamples) {
  if (!rs::cpu::amx_bf16_usable()) GTEST_SKIP() << "this CPU runs no AMX bf16 tiles";
  const std::vector<int> lengths = {23, 5, 700, 1, 300};
  const int heads = 2, head_dim = 64, dim = heads * head_dim;
  std::vector<int> cu = {0};
  for (int n : lengths) cu.push_back(cu.back() + n);
  const std::size_t rows = std::size_t(cu.back());
  const auto qkv = ref::random_floats(rows * 3 * dim, 54, -2.0f, 2.0f);
  auto key_bias = ref::random_floats(rows, 55, -1.0f, 1.0f);
  std::fill(key_bias.begin() + cu[2], key_bias.begin() + cu[2] + 300, -INFINITY);  // sample 2: its first 300 keys
  std::fill(key_bias.begin() + cu[4], key_bias.begin() + cu[5], -INFINITY);        // sample 4: every key
  std::vector<float> out(rows * dim, 0.0f);
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), int(lengths.size()), 700, heads, head_dim);
  p.cu_seqlens = cu.data();
  p.key_bias = key_bias.data();
  rs::cpu::flash_attention(rs::Host{0, rs::DenseMath::Bf16}, p);
  const ref::Mat operands = amx_operands(qkv, {}, rows, dim, head_dim);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    const std::vector<float> got(out.begin() + std::ptrdiff_t(cu[b]) * dim,
                                 out.begin() + std::ptrdiff_t(cu[b + 1]) * dim);
    if (b == 4) {
      EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float x) { return std::isnan(x); })) << "every key masked";
      continue;
    }
    const ref::Mat sample(operands.begin() + std::ptrdiff_t(cu[b]) * 3 * dim,
                          operands.begin() + std::ptrdiff_t(cu[b + 1]) * 3 * dim);
    const std::vector<double> bias(key_bias.begin() + cu[b], key_bias.begin() + cu[b + 1]);
    EXPECT_LT(ref::max_rel_error(got, ref::attention(sample, 1, lengths[b], heads, head_dim, nullptr, &bias)), 4e-3)
        << "sample " << b;
  }
}

// Padded samples (key_lengths: every query row computed over the valid
// keys), output rows wider than heads x head_dim, and a NaN in one key:
// every query of that sample and head gets NaN, as on the float kernel.
TEST(AttentionAmx, PaddingStridesAndNaN) {
  if (!rs::cpu::amx_bf16_usable()) GTEST_SKIP() << "this CPU runs no AMX bf16 tiles";
  const int batch = 2, tokens = 150, heads = 2, head_dim = 64, dim = heads * head_dim, out_stride = dim + 24;
  const std::vector<int> valid = {150, 97};
  auto qkv = ref::random_floats(std::size_t(batch) * tokens * 3 * dim, 56, -2.0f, 2.0f);
  std::vector<float> out(std::size_t(batch) * tokens * out_stride, 0.0f);
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), batch, tokens, heads, head_dim);
  p.key_lengths = valid.data();
  p.out_token_stride = out_stride;
  p.out_batch_stride = std::int64_t(tokens) * out_stride;
  rs::cpu::flash_attention(rs::Host{0, rs::DenseMath::Bf16}, p);
  const ref::Mat operands = amx_operands(qkv, {}, std::size_t(batch) * tokens, dim, head_dim);
  for (int b = 0; b < batch; ++b) {
    // Every query against the sample's first valid[b] keys: the truncated sequence's keys, all queries.
    ref::Mat sample(operands.begin() + std::ptrdiff_t(b) * tokens * 3 * dim,
                    operands.begin() + std::ptrdiff_t(b + 1) * tokens * 3 * dim);
    for (int n = 0; n < tokens; ++n) {
      const ref::Mat one_query = [&] {
        ref::Mat m(sample.begin(), sample.begin() + std::ptrdiff_t(valid[b]) * 3 * dim);
        std::copy(sample.begin() + std::ptrdiff_t(n) * 3 * dim, sample.begin() + std::ptrdiff_t(n) * 3 * dim + dim,
                  m.begin());  // query n in row 0's q
        return m;
      }();
      const ref::Mat want = ref::attention(one_query, 1, valid[b], heads, head_dim);
      const float* got = out.data() + (std::size_t(b) * tokens + n) * out_stride;
      EXPECT_LT(ref::max_rel_error(std::vector<float>(got, got + dim), ref::Mat(want.begin(), want.begin() + dim)),
                4e-3)
          << "sample " << b << " query " << n;
    }
    // The padding between output rows is left alone.
    EXPECT_EQ(out[(std::size_t(b) * tokens + 3) * out_stride + dim], 0.0f);
  }
  qkv[std::size_t(40) * 3 * dim + dim + 5] = NAN;  // sample 0, key 40, head 0
  rs::cpu::flash_attention(rs::Host{0, rs::DenseMath::Bf16}, p);
  for (int n = 0; n < tokens; ++n) {
    EXPECT_TRUE(std::isnan(out[std::size_t(n) * out_stride])) << "query " << n << ", head 0";
    EXPECT_FALSE(std::isnan(out[std::size_t(n) * out_stride + head_dim])) << "query " << n << ", head 1";
  }
}
