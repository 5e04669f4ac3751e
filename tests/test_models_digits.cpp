// Real trained weights: the ViT trained with PyTorch + timm on scikit-learn's
// digits (data/digits_vit/, bench/fidelity/train_digits_vit.py) and the
// video transformer trained on clips of those digits moving over 8 frames
// (data/digit_clips/, bench/fidelity/train_digit_clips.py) give the logits
// PyTorch computed for the held-out inputs, hence the same predictions and
// the same test accuracy.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <repshift/models/vit.hpp>
#if defined(REPSHIFT_HAS_ONEDNN)
#include <oneapi/dnnl/dnnl.h>  // dnnl_version
#endif

#include "reference_transformer.hpp"
#include "test_support.hpp"

namespace rs = repshift;

namespace {

const std::string kData = std::string(REPSHIFT_SOURCE_DIR) + "/data/";

int argmax(const float* v, int n) { return int(std::max_element(v, v + n) - v); }

struct TestSet {
  int count = 0;
  std::vector<float> inputs, labels, torch_logits;
};

// inputs: "images" [N, C, S, S] or "clips" [N, C, frames, S, S].
TestSet load_test_set(const std::string& dir, const rs::ViTConfig& cfg) {
  const rs::io::SafeTensorsFile file(dir + "test_set.safetensors");
  TestSet t;
  t.count = int(file.info("labels").shape.at(0));
  t.labels = file.load_f32("labels", {t.count});
  t.inputs = cfg.frames > 1
                 ? file.load_f32("clips", {t.count, cfg.in_chans, cfg.frames, cfg.image_size, cfg.image_size})
                 : file.load_f32("images", {t.count, cfg.in_chans, cfg.image_size, cfg.image_size});
  t.torch_logits = file.load_f32("logits", {t.count, cfg.num_classes});
  return t;
}

// Our logits against PyTorch's f32 ones over a whole test set.
struct Agreement {
  double max_err = 0, max_logit = 0;  // largest |ours - PyTorch| and largest |PyTorch logit|
  int same = 0, correct = 0, torch_correct = 0;
};

Agreement compare(const TestSet& t, const std::vector<float>& logits, int classes) {
  Agreement a;
  for (int i = 0; i < t.count; ++i) {
    const float* ours = logits.data() + std::size_t(i) * classes;
    const float* ref = t.torch_logits.data() + std::size_t(i) * classes;
    for (int k = 0; k < classes; ++k) {
      a.max_err = ref::worse(a.max_err, std::abs(double(ours[k]) - ref[k]));
      a.max_logit = std::max(a.max_logit, std::abs(double(ref[k])));
    }
    a.same += argmax(ours, classes) == argmax(ref, classes);
    a.correct += argmax(ours, classes) == int(t.labels[std::size_t(i)]);
    a.torch_correct += argmax(ref, classes) == int(t.labels[std::size_t(i)]);
  }
  return a;
}

std::vector<float> run(const std::string& dir, const rs::ViTConfig& cfg, const TestSet& t, rs::Host host) {
  rs::VisionTransformer<> model(rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(dir + "model.safetensors")));
  std::vector<float> logits(std::size_t(t.count) * cfg.num_classes);
  model.forward(host, t.inputs.data(), t.count, logits.data(), rs::PruneSchedule::none(cfg.class_token() ? 1 : 0));
  return logits;
}

void expect_pytorch_logits(const std::string& dir, const rs::ViTConfig& cfg) {
  const TestSet t = load_test_set(dir, cfg);
  ASSERT_GT(t.count, 300);
  const Agreement a = compare(t, run(dir, cfg, t, rs::Host{}), cfg.num_classes);
  EXPECT_EQ(a.same, t.count);
  EXPECT_LE(a.max_err, 1e-4 * a.max_logit) << "largest |logit| " << a.max_logit;
  EXPECT_EQ(a.correct, a.torch_correct);
  EXPECT_GT(double(a.correct) / t.count, 0.85);  // a trained model, not noise
  ::testing::Test::RecordProperty("accuracy", std::to_string(double(a.correct) / t.count));
  ::testing::Test::RecordProperty("max_abs_logit_error", std::to_string(a.max_err));
}

}  // namespace

TEST(DigitsViT, LogitsAndAccuracyMatchPyTorch) { expect_pytorch_logits(kData + "digits_vit/", rs::ViTConfig::digits()); }

TEST(DigitClipsVideoTransformer, LogitsAndAccuracyMatchPyTorch) {
  expect_pytorch_logits(kData + "digit_clips/", rs::ViTConfig::digit_clips());
}

#if defined(REPSHIFT_HAS_ONEDNN)
namespace {

// The same trained models in DenseMath::Bf16 (the dense layers in
// bfloat16 with f32 accumulation, and on a CPU with AMX the attention's
// products too) against PyTorch's f32 logits: the error bf16 costs, and
// accuracy within one point of f32.
void expect_bf16_close_to_f32(const std::string& dir, const rs::ViTConfig& cfg) {
  if (!rs::cpu::DenseLayers::bf16_native()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX";
  const TestSet t = load_test_set(dir, cfg);
  const Agreement a = compare(t, run(dir, cfg, t, rs::Host{0, rs::DenseMath::Bf16}), cfg.num_classes);
  std::printf(
      "bf16 (attention on AMX tiles: %s): max |logit - f32 logit| = %.3g (%.2f%% of max |logit| %.3g), %d of %d "
      "predictions as in f32, accuracy %.4f (f32 %.4f)\n",
      rs::cpu::amx_bf16_usable() ? "yes" : "no", a.max_err, 100 * a.max_err / a.max_logit, a.max_logit, a.same, t.count,
      double(a.correct) / t.count, double(a.torch_correct) / t.count);
  EXPECT_GT(a.max_err, 0.0);                 // bf16 really ran
  EXPECT_LE(a.max_err, 0.05 * a.max_logit);  // 8-bit mantissas, f32 accumulation
  EXPECT_GE(a.same, t.count * 97 / 100);
  EXPECT_LE(std::abs(a.correct - a.torch_correct), t.count / 100);
}

}  // namespace

TEST(DenseMathBf16, DigitsViTCloseToF32) { expect_bf16_close_to_f32(kData + "digits_vit/", rs::ViTConfig::digits()); }
TEST(DenseMathBf16, DigitClipsCloseToF32) {
  expect_bf16_close_to_f32(kData + "digit_clips/", rs::ViTConfig::digit_clips());
}

// Batch invariance in bf16: 16 clips of 64 tokens are 1024 rows, which
// the dense layers run as row bands on 2 threads (onednn_linear.hpp); one
// clip alone, 64 rows, runs on oneDNN's own split. Same logits, same kept
// tokens, under the paper's retrieval schedule.
TEST(DenseMathBf16, DigitClipsBatchInvariant) {
  if (!rs::cpu::DenseLayers::bf16_native()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX";
  const auto cfg = rs::ViTConfig::digit_clips();
  const TestSet t = load_test_set(kData + "digit_clips/", cfg);
  constexpr int kClips = 16;
  ASSERT_GE(t.count, kClips);
  rs::VisionTransformer<> model(
      rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(kData + "digit_clips/model.safetensors")));
  const rs::Host host{2, rs::DenseMath::Bf16};
  const auto schedule = rs::PruneSchedule::drop({{0, 0.2}, {1, 0.2}, {2, 0.2}}, 0);
  const std::size_t pixels = t.inputs.size() / std::size_t(t.count), classes = std::size_t(cfg.num_classes);
  std::vector<float> logits(kClips * classes);
  rs::ViTTrace trace;
  model.forward(host, t.inputs.data(), kClips, logits.data(), schedule, &trace);
  ASSERT_EQ(trace.keep_idx.size(), 3u);
  for (int b = 0; b < kClips; ++b) {
    std::vector<float> one(classes);
    rs::ViTTrace alone;
    model.forward(host, t.inputs.data() + b * pixels, 1, one.data(), schedule, &alone);
    const std::vector<float> in_batch(logits.begin() + b * classes, logits.begin() + (b + 1) * classes);
    EXPECT_LT(ref::max_rel_error(in_batch, std::vector<double>(one.begin(), one.end())), 1e-5) << "clip " << b;
    for (std::size_t l = 0; l < trace.keep_idx.size(); ++l) {
      const std::size_t keep = trace.keep_idx[l].size() / kClips;
      EXPECT_EQ(std::vector<int>(trace.keep_idx[l].begin() + b * keep, trace.keep_idx[l].begin() + (b + 1) * keep),
                alone.keep_idx[l])
          << "clip " << b << ", pruning layer " << l;
    }
  }
}

// Where the CPU lacks bf16 (ctest runs this again under
// ONEDNN_MAX_CPU_ISA=AVX2 to see it here), the mode is refused by name.
TEST(DenseMathBf16, RefusedWithoutNativeSupport) {
  if (rs::cpu::DenseLayers::bf16_native()) GTEST_SKIP() << "this CPU has bf16 (ctest: dense_math.bf16_refused_on_avx2)";
  const auto cfg = rs::ViTConfig::digits();
  rs::VisionTransformer<> model(rs::ViTWeights::random(cfg, 1));
  std::vector<float> images(std::size_t(cfg.in_chans) * cfg.image_size * cfg.image_size),
      logits(std::size_t(cfg.num_classes));
  try {
    model.forward(rs::Host{0, rs::DenseMath::Bf16}, images.data(), 1, logits.data());
    FAIL() << "expected rs::InvalidArgument";
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("dense_math = bf16 needs a CPU with AVX512-BF16 or AMX"), std::string::npos)
        << e.what();
  }
}
#endif

#if defined(REPSHIFT_HAS_ONEDNN)
// The oneDNN that runs is the one compiled against (an LD_LIBRARY_PATH can
// put another in front of the RUNPATH), and the one the test command asks
// for: tests/run_all.sh sets REPSHIFT_EXPECT_ONEDNN=3.2 for its 3.x stage.
TEST(OneDnn, LoadedLibraryIsTheOneBuiltAgainst) {
  const dnnl_version_t* loaded = dnnl_version();
  const std::string version = std::to_string(loaded->major) + "." + std::to_string(loaded->minor);
  EXPECT_EQ(loaded->major, DNNL_VERSION_MAJOR) << "loaded oneDNN " << version;
  EXPECT_EQ(loaded->minor, DNNL_VERSION_MINOR) << "loaded oneDNN " << version;
  if (const char* expected = std::getenv("REPSHIFT_EXPECT_ONEDNN")) {
    EXPECT_EQ(version, expected) << "REPSHIFT_EXPECT_ONEDNN";
  }
}

namespace {

// y = [GELU](x W^T + bias) in double, x's rows ldx apart, W [n, k].
std::vector<double> linear_reference(const std::vector<float>& x, std::int64_t ldx, std::int64_t rows, std::int64_t k,
                                     const std::vector<float>& w, const float* bias, std::int64_t n, bool gelu) {
  std::vector<double> y(std::size_t(rows * n));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t o = 0; o < n; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (std::int64_t i = 0; i < k; ++i) acc += double(x[std::size_t(r * ldx + i)]) * w[std::size_t(o * k + i)];
      y[std::size_t(r * n + o)] = gelu ? ref::gelu(acc) : acc;
    }
  }
  return y;
}

}  // namespace

// Whatever layout oneDNN's matmul reads the weights in (packed on
// AVX-512; W as stored where its matmul is the plain sgemm: ctest runs
// this again under ONEDNN_MAX_CPU_ISA=AVX2), the dense layers match a
// double reference, with and without bias and GELU, for strided rows, and
// follow weights rewritten in place.
TEST(DenseLayers, MatchDoubleReferenceInEveryLayout) {
  struct Shape {
    std::int64_t rows, k, n, ldx;
  };
  rs::cpu::DenseLayers dense;
  for (const Shape s : {Shape{1, 7, 5, 7}, Shape{33, 64, 48, 80}, Shape{197, 384, 1536, 384}, Shape{102, 96, 24, 100}}) {
    const auto x = ref::random_floats(std::size_t(s.rows * s.ldx), 1, -0.5f, 0.5f);
    auto w = ref::random_floats(std::size_t(s.n * s.k), 2, -0.5f, 0.5f);
    const auto bias = ref::random_floats(std::size_t(s.n), 3, -0.5f, 0.5f);
    std::vector<float> y(std::size_t(s.rows * s.n));
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) {
        for (auto& e : w) e = 0.5f - e;  // in place: the next calls must see it
      }
      for (const bool with_bias : {false, true}) {
        for (const bool gelu : {false, true}) {
          const float* b = with_bias ? bias.data() : nullptr;
          std::fill(y.begin(), y.end(), NAN);  // every element written by this call
          dense.linear(rs::Host{}, x.data(), s.ldx, s.rows, s.k, w.data(), b, s.n, y.data(), gelu);
          const auto want = linear_reference(x, s.ldx, s.rows, s.k, w, b, s.n, gelu);
          double worst = 0;
          for (std::size_t i = 0; i < y.size(); ++i) worst = ref::worse(worst, std::abs(y[i] - want[i]));
          EXPECT_LE(worst, 2e-6 * std::sqrt(double(s.k)))
              << "rows " << s.rows << " k " << s.k << " n " << s.n << " bias " << with_bias << " gelu " << gelu
              << " pass " << pass << " (oneDNN ISA " << rs::cpu::DenseLayers::isa_name() << ")";
        }
      }
    }
  }
}

// A serving process sees ever new row counts (packed sentences): the
// plans, one per row count, start again past their cap, and every call
// before and after still multiplies right. Empty widths are refused.
TEST(DenseLayers, PlansForManyRowCountsStayBoundedAndRight) {
  const std::int64_t k = 24, n = 16, most_rows = 300;
  rs::cpu::DenseLayers dense;
  const auto x = ref::random_floats(std::size_t(most_rows * k), 4, -0.5f, 0.5f);
  const auto w = ref::random_floats(std::size_t(n * k), 5, -0.5f, 0.5f);
  const auto bias = ref::random_floats(std::size_t(n), 6, -0.5f, 0.5f);
  const auto want = linear_reference(x, k, most_rows, k, w, bias.data(), n, true);
  // One thread: the cap is kMaxPlans, below the 300 row counts.
  static_assert(rs::cpu::DenseLayers::kMaxPlans < most_rows, "the cap must be reached");
  for (std::int64_t rows = 1; rows <= most_rows; ++rows) {
    std::vector<float> y(std::size_t(rows * n));
    dense.linear(rs::Host{1}, x.data(), k, rows, k, w.data(), bias.data(), n, y.data(), true);
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y[i], want[i], 2e-6 * std::sqrt(double(k))) << "rows " << rows << " element " << i;
    }
    ASSERT_LE(dense.plan_count(), rs::cpu::DenseLayers::kMaxPlans) << "rows " << rows;
  }
  std::vector<float> y(static_cast<std::size_t>(n));
  expect_refused([&] { dense.linear(rs::Host{}, x.data(), k, 1, 0, w.data(), nullptr, n, y.data()); },
                 {"cpu::DenseLayers::linear", "k = 0"});
  expect_refused([&] { dense.linear(rs::Host{}, x.data(), k, 1, k, w.data(), nullptr, 0, y.data()); },
                 {"cpu::DenseLayers::linear", "n = 0"});
}

// DenseMath::Bf16 from 256 rows per thread runs as bands, one
// single-threaded matmul per thread (onednn_linear.hpp). Each row must come
// out as it does from one thread over all rows and from a call of only its
// own sample's rows (batch invariance), and match a double reference on
// the bfloat16-rounded operands; for odd row counts and strided x too.
TEST(DenseLayers, Bf16BandsAreExactAndBatchInvariant) {
  if (!rs::cpu::DenseLayers::bf16_native()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX";
  struct Shape {
    std::int64_t rows, k, n, ldx;
  };
  const auto rounded = [](std::vector<float> v) {
    for (auto& e : v) e = rs::to_float(rs::bf16(e));
    return v;
  };
  for (const Shape s : {Shape{1576, 384, 160, 384}, Shape{1061, 96, 72, 100}}) {
    const auto x = ref::random_floats(std::size_t(s.rows * s.ldx), 4, -0.5f, 0.5f);
    const auto w = ref::random_floats(std::size_t(s.n * s.k), 5, -0.5f, 0.5f);
    const auto bias = ref::random_floats(std::size_t(s.n), 6, -0.5f, 0.5f);
    for (const bool gelu : {false, true}) {
      rs::cpu::DenseLayers dense;
      std::vector<float> banded(std::size_t(s.rows * s.n)), one_thread(banded.size());
      dense.linear(rs::Host{2, rs::DenseMath::Bf16}, x.data(), s.ldx, s.rows, s.k, w.data(), bias.data(), s.n,
                   banded.data(), gelu);
      dense.linear(rs::Host{1, rs::DenseMath::Bf16}, x.data(), s.ldx, s.rows, s.k, w.data(), bias.data(), s.n,
                   one_thread.data(), gelu);
      EXPECT_EQ(banded, one_thread) << "rows " << s.rows << " gelu " << gelu;
      // The last sample's 197 rows alone: below the band threshold, oneDNN's own split.
      const std::int64_t first = s.rows - 197;
      std::vector<float> alone(std::size_t(197 * s.n));
      dense.linear(rs::Host{2, rs::DenseMath::Bf16}, x.data() + first * s.ldx, s.ldx, 197, s.k, w.data(), bias.data(),
                   s.n, alone.data(), gelu);
      EXPECT_TRUE(std::equal(alone.begin(), alone.end(), banded.begin() + first * s.n))
          << "rows " << s.rows << " gelu " << gelu;
      const auto want = linear_reference(rounded(x), s.ldx, s.rows, s.k, rounded(w), bias.data(), s.n, gelu);
      double worst = 0;
      for (std::size_t i = 0; i < banded.size(); ++i) worst = ref::worse(worst, std::abs(banded[i] - want[i]));
      EXPECT_LE(worst, 2e-6 * std::sqrt(double(s.k))) << "rows " << s.rows << " gelu " << gelu;
    }
  }
}
#endif
