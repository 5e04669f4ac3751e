// 05_real_data: representation-shift pruning on trained models and real
// inputs, then the speed it buys on a long video sequence.
//   1. The digits ViT (data/digits_vit: scikit-learn's 8x8 digits, 17
//      tokens): held-out accuracy unpruned vs pruned, and a PNG of the
//      patches that survive drawn over the digits.
//   2. The video transformer on digit clips (data/digit_clips: a digit
//      moving over 8 frames, 64 space-time tokens, no class token): the
//      tokens entering each layer under the paper's video schedule,
//      accuracy unpruned vs pruned, and a PNG of the surviving space-time
//      patches, frame by frame.
//   3. UMT-B on 8 frames (1568 tokens, random weights: speed does not depend
//      on them): unpruned vs the paper's video schedule, interleaved rounds.
//
//   prune_demo [DATA_DIR] [OUT_DIR] [rounds]
// DATA_DIR defaults to the source tree's data/, OUT_DIR to the current
// directory (the PNGs: digits_kept.png, clips_kept.png).

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <repshift/models/video.hpp>

#include "../common/png_writer.hpp"

namespace rs = repshift;

namespace {

struct Labelled {
  int count = 0;
  std::vector<float> inputs;
  std::vector<int> labels;
};

Labelled load(const std::string& path, const rs::ViTConfig& cfg) {
  const rs::io::SafeTensorsFile file(path);
  Labelled t;
  t.count = int(file.info("labels").shape.at(0));
  t.inputs = cfg.frames > 1
                 ? file.load_f32("clips", {t.count, cfg.in_chans, cfg.frames, cfg.image_size, cfg.image_size})
                 : file.load_f32("images", {t.count, cfg.in_chans, cfg.image_size, cfg.image_size});
  for (float l : file.load_f32("labels", {t.count})) t.labels.push_back(int(l));
  return t;
}

// Accuracy of `model` on t under `schedule`; trace filled for the batch.
template <class Model>
double accuracy(Model& model, const Labelled& t, const rs::PruneSchedule& schedule, rs::ViTTrace* trace) {
  const int classes = model.config().num_classes;
  std::vector<float> logits(std::size_t(t.count) * classes);
  model.forward(rs::Host{}, t.inputs.data(), t.count, logits.data(), schedule, trace);
  int correct = 0;
  for (int i = 0; i < t.count; ++i) {
    const float* l = logits.data() + std::size_t(i) * classes;
    correct += int(std::max_element(l, l + classes) - l) == t.labels[std::size_t(i)];
  }
  return double(correct) / t.count;
}

// Which original tokens of sample b survive every pruning layer: with
// Compress = Prune, trace.source of the last pruning layer names them
// ([batch, tokens out], original positions).
std::vector<bool> survivors(const rs::ViTTrace& trace, int b, int tokens) {
  std::vector<bool> kept(std::size_t(tokens), trace.source.empty());
  if (trace.source.empty()) return kept;
  const std::size_t out = std::size_t(trace.tokens.back());
  for (std::size_t k = 0; k < out; ++k) {
    const int t = trace.source.back()[std::size_t(b) * out + k];
    if (t >= 0) kept[std::size_t(t)] = true;
  }
  return kept;
}

// Grey pixel of v in [-1, 1]; dropped patches are drawn in dim red.
std::array<std::uint8_t, 3> shade(float v, bool kept) {
  const auto g = std::uint8_t(std::clamp((v + 1.0f) * 127.5f, 0.0f, 255.0f));
  if (kept) return {g, g, g};
  return {std::uint8_t(90 + g / 3), std::uint8_t(g / 5), std::uint8_t(g / 5)};
}

void digits_png(const std::string& path, const rs::ViTConfig& cfg, const Labelled& t, const rs::ViTTrace& trace,
                int shown) {
  const int scale = 8, size = cfg.image_size * scale, gap = 4, g = cfg.grid();
  demo::RgbImage img(shown * (size + gap) + gap, size + 2 * gap);
  for (int b = 0; b < shown; ++b) {
    const auto kept = survivors(trace, b, cfg.tokens());
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const int py = y / scale, px = x / scale, patch = py / cfg.patch_size * g + px / cfg.patch_size;
        const float v = t.inputs[(std::size_t(b) * cfg.image_size + py) * cfg.image_size + px];
        img.set(gap + b * (size + gap) + x, gap + y, shade(v, kept[std::size_t(1 + patch)]));
      }
  }
  demo::write_png(path, img);
}

void clips_png(const std::string& path, const rs::ViTConfig& cfg, const Labelled& t, const rs::ViTTrace& trace,
               int shown) {
  const int scale = 4, size = cfg.image_size * scale, gap = 4, g = cfg.grid(), S = cfg.image_size;
  demo::RgbImage img(cfg.frames * (size + gap) + gap, shown * (size + gap) + gap);
  for (int b = 0; b < shown; ++b) {
    const auto kept = survivors(trace, b, cfg.tokens());
    for (int f = 0; f < cfg.frames; ++f)
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
          const int py = y / scale, px = x / scale;
          const int token = f / cfg.tubelet * g * g + py / cfg.patch_size * g + px / cfg.patch_size;
          const float v = t.inputs[((std::size_t(b) * cfg.frames + f) * S + py) * S + px];
          img.set(gap + f * (size + gap) + x, gap + b * (size + gap) + y, shade(v, kept[std::size_t(token)]));
        }
  }
  demo::write_png(path, img);
}

void print_tokens(const rs::ViTTrace& trace) {
  fmt::print("  tokens entering each layer:");
  for (std::size_t l = 0; l + 1 < trace.tokens.size(); ++l) fmt::print(" {}", trace.tokens[l]);
  fmt::print("\n");
}

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string data = argc > 1 ? argv[1] : std::string(REPSHIFT_DEMO_DATA_DIR);
  const std::string out = argc > 2 ? argv[2] : ".";
  const int rounds = argc > 3 ? std::max(1, std::atoi(argv[3])) : 2;
  try {
    // 1. Digits ViT: keep 70% of the tokens at layers 1 and 3 (CLS protected).
    {
      const auto cfg = rs::ViTConfig::digits();
      rs::VisionTransformer<> model(rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(data + "/digits_vit/model.safetensors")));
      const Labelled t = load(data + "/digits_vit/test_set.safetensors", cfg);
      const auto schedule = rs::PruneSchedule::drop({{1, 0.3}, {3, 0.3}});
      rs::ViTTrace trace;
      const double full = accuracy(model, t, rs::PruneSchedule::none(), nullptr);
      const double pruned = accuracy(model, t, schedule, &trace);
      fmt::print("digits ViT, {} held-out images: accuracy {:.3f} unpruned, {:.3f} pruned (drop 30% at layers 1, 3)\n",
                 t.count, full, pruned);
      print_tokens(trace);
      digits_png(out + "/digits_kept.png", cfg, t, trace, 12);
      fmt::print("  kept patches drawn over the digits (dropped: red): {}/digits_kept.png\n", out);
    }
    // 2. The video transformer on digit clips, the paper's retrieval schedule.
    {
      const auto cfg = rs::ViTConfig::digit_clips();
      rs::VideoTransformer<> model(rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(data + "/digit_clips/model.safetensors")));
      const Labelled t = load(data + "/digit_clips/test_set.safetensors", cfg);
      const auto schedule = rs::PruneSchedule::video_retrieval();
      rs::ViTTrace trace;
      const double full = accuracy(model, t, rs::PruneSchedule::none(0), nullptr);
      const double pruned = accuracy(model, t, schedule, &trace);
      fmt::print("video transformer, {} held-out digit clips (8 frames): accuracy {:.3f} unpruned, {:.3f} pruned "
                 "(drop 20% at blocks 0, 1, 2)\n",
                 t.count, full, pruned);
      print_tokens(trace);
      clips_png(out + "/clips_kept.png", cfg, t, trace, 6);
      fmt::print("  surviving space-time patches, frame by frame: {}/clips_kept.png\n", out);
    }
    // 3. UMT-B on 8 frames: the speed of the same schedule at 1568 tokens.
    {
      const auto cfg = rs::ViTConfig::umt_base(8);
      const auto w = std::make_shared<const rs::ViTWeights>(rs::ViTWeights::random(cfg, 0));
      rs::VideoTransformer<> model(w);
      std::vector<float> clip(std::size_t(3) * cfg.frames * 224 * 224), logits(std::size_t(cfg.num_classes));
      std::mt19937 gen(1);
      std::normal_distribution<float> normal;
      for (auto& v : clip) v = normal(gen);
      const rs::PruneSchedule schedules[2] = {rs::PruneSchedule::none(0), rs::PruneSchedule::video_retrieval()};
      rs::ViTTrace trace;
      model.forward(rs::Host{}, clip.data(), 1, logits.data(), schedules[1], &trace);  // warm-up, token counts
      std::vector<double> times[2];
      for (int r = 0; r < rounds; ++r)
        for (int v = 0; v < 2; ++v) {
          const double t0 = seconds_now();
          model.forward(rs::Host{}, clip.data(), 1, logits.data(), schedules[v]);
          times[v].push_back(seconds_now() - t0);
        }
      for (auto& t : times) std::sort(t.begin(), t.end());
      const double unpruned = times[0][times[0].size() / 2], pruned = times[1][times[1].size() / 2];
      fmt::print("UMT-B, 8 frames x 196 = {} tokens, batch 1, CPU: {:.2f} s unpruned, {:.2f} s pruned: {:.2f}x\n",
                 cfg.tokens(), unpruned, pruned, unpruned / pruned);
      print_tokens(trace);
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "prune_demo: {}\n", e.what());
    return 1;
  }
}
