// Real trained weights: the ViT trained with PyTorch + timm on scikit-learn's
// digits (data/digits_vit/, bench/fidelity/train_digits_vit.py) and the
// video transformer trained on clips of those digits moving over 8 frames
// (data/digit_clips/, bench/fidelity/train_digit_clips.py) give the logits
// PyTorch computed for the held-out inputs, hence the same predictions and
// the same test accuracy.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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
