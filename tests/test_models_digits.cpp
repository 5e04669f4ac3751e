// Real trained weights: the ViT trained with PyTorch + timm on scikit-learn's
// digits (data/digits_vit/, bench/fidelity/train_digits_vit.py) and the
// video transformer trained on clips of those digits moving over 8 frames
// (data/digit_clips/, bench/fidelity/train_digit_clips.py) give the logits
// PyTorch computed for the held-out inputs, hence the same predictions and
// the same test accuracy.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <repshift/models/vit.hpp>

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

void expect_pytorch_logits(const std::string& dir, const rs::ViTConfig& cfg) {
  const TestSet t = load_test_set(dir, cfg);
  ASSERT_GT(t.count, 300);
  rs::VisionTransformer<> model(rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(dir + "model.safetensors")));
  std::vector<float> logits(std::size_t(t.count) * cfg.num_classes);
  model.forward(rs::Host{}, t.inputs.data(), t.count, logits.data(), rs::PruneSchedule::none(cfg.class_token() ? 1 : 0));
  int ours_correct = 0, torch_correct = 0;
  double max_err = 0, max_logit = 0;
  for (int i = 0; i < t.count; ++i) {
    const float* a = logits.data() + std::size_t(i) * cfg.num_classes;
    const float* r = t.torch_logits.data() + std::size_t(i) * cfg.num_classes;
    for (int k = 0; k < cfg.num_classes; ++k) {
      max_err = std::max(max_err, std::abs(double(a[k]) - r[k]));
      max_logit = std::max(max_logit, std::abs(double(r[k])));
    }
    EXPECT_EQ(argmax(a, cfg.num_classes), argmax(r, cfg.num_classes)) << "input " << i;
    ours_correct += argmax(a, cfg.num_classes) == int(t.labels[std::size_t(i)]);
    torch_correct += argmax(r, cfg.num_classes) == int(t.labels[std::size_t(i)]);
  }
  EXPECT_LE(max_err, 1e-4 * max_logit) << "largest |logit| " << max_logit;
  EXPECT_EQ(ours_correct, torch_correct);
  EXPECT_GT(double(ours_correct) / t.count, 0.85);  // a trained model, not noise
  ::testing::Test::RecordProperty("accuracy", std::to_string(double(ours_correct) / t.count));
  ::testing::Test::RecordProperty("max_abs_logit_error", std::to_string(max_err));
}

}  // namespace

TEST(DigitsViT, LogitsAndAccuracyMatchPyTorch) { expect_pytorch_logits(kData + "digits_vit/", rs::ViTConfig::digits()); }

TEST(DigitClipsVideoTransformer, LogitsAndAccuracyMatchPyTorch) {
  expect_pytorch_logits(kData + "digit_clips/", rs::ViTConfig::digit_clips());
}

#if defined(REPSHIFT_HAS_ONEDNN)
namespace {

// The same trained models with the dense layers in bfloat16 (f32
// accumulation) against PyTorch's f32 logits: the error bf16 costs, and
// accuracy within one point of f32.
void expect_bf16_close_to_f32(const std::string& dir, const rs::ViTConfig& cfg) {
  if (!rs::cpu::DenseLayers::bf16_native()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX";
  const TestSet t = load_test_set(dir, cfg);
  rs::VisionTransformer<> model(rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(dir + "model.safetensors")));
  std::vector<float> logits(std::size_t(t.count) * cfg.num_classes);
  model.forward(rs::Host{0, rs::DenseMath::Bf16}, t.inputs.data(), t.count, logits.data(),
                rs::PruneSchedule::none(cfg.class_token() ? 1 : 0));
  int correct = 0, torch_correct = 0, same = 0;
  double max_err = 0, max_logit = 0;
  for (int i = 0; i < t.count; ++i) {
    const float* a = logits.data() + std::size_t(i) * cfg.num_classes;
    const float* r = t.torch_logits.data() + std::size_t(i) * cfg.num_classes;
    for (int k = 0; k < cfg.num_classes; ++k) {
      max_err = std::max(max_err, std::abs(double(a[k]) - r[k]));
      max_logit = std::max(max_logit, std::abs(double(r[k])));
    }
    same += argmax(a, cfg.num_classes) == argmax(r, cfg.num_classes);
    correct += argmax(a, cfg.num_classes) == int(t.labels[std::size_t(i)]);
    torch_correct += argmax(r, cfg.num_classes) == int(t.labels[std::size_t(i)]);
  }
  std::printf("bf16 dense layers: max |logit - f32 logit| = %.3g (%.2f%% of max |logit| %.3g), %d of %d predictions "
              "as in f32, accuracy %.4f (f32 %.4f)\n",
              max_err, 100 * max_err / max_logit, max_logit, same, t.count, double(correct) / t.count,
              double(torch_correct) / t.count);
  EXPECT_GT(max_err, 0.0);                   // bf16 really ran
  EXPECT_LE(max_err, 0.05 * max_logit);      // 8-bit mantissas, f32 accumulation
  EXPECT_GE(same, t.count * 97 / 100);
  EXPECT_LE(std::abs(correct - torch_correct), t.count / 100);
}

}  // namespace

TEST(DenseMathBf16, DigitsViTCloseToF32) { expect_bf16_close_to_f32(kData + "digits_vit/", rs::ViTConfig::digits()); }
TEST(DenseMathBf16, DigitClipsCloseToF32) {
  expect_bf16_close_to_f32(kData + "digit_clips/", rs::ViTConfig::digit_clips());
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
