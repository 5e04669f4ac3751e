// model_timing: images (or sequences) per second of repshift's models on the
// CPU, for the peer script (bench/peer/vs_pytorch.py), which interleaves it
// with PyTorch runs.
//   model_timing deit_s|deit_b BATCH pruned|unpruned SECONDS
//   model_timing minilm BATCH pruned|unpruned SECONDS SEQ_LEN MODEL.safetensors
//   model_timing resnet50 BATCH pruned|unpruned SECONDS
// Prints the median rate over forward passes run for about SECONDS.
// Pruned: DeiT = the paper's schedule (drop 0.2 at blocks 0, 3, 6: 197 ->
// 158 -> 127 -> 102); MiniLM = drop 0.3 at layers 1 and 3; MLP-site L2 for
// both, CLS protected.
// ResNet-50 = LinePruneSchedule::paper() (8 + 8 lines after stage 1, 4 + 4
// after stage 2, L2 shift of the stage's last block), default layout
// (NHWC where the build has oneDNN).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <repshift/models/bert.hpp>
#include <repshift/models/resnet.hpp>
#include <repshift/models/vit.hpp>

namespace rs = repshift;

namespace {

double median_rate(int batch, double budget, const std::function<void()>& forward) {
  forward();  // warm-up: scratch allocation, page faults
  std::vector<double> rates;
  const auto start = std::chrono::steady_clock::now();
  while (rates.size() < 3 || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < budget) {
    const auto t0 = std::chrono::steady_clock::now();
    forward();
    rates.push_back(batch / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

double deit(const std::string& name, int batch, bool pruned, double budget) {
  const rs::ViTConfig cfg = name == "deit_b" ? rs::ViTConfig::deit_base() : rs::ViTConfig::deit_small();
  rs::VisionTransformer<> model(rs::ViTWeights::random(cfg, 0));
  std::vector<float> images(std::size_t(batch) * 3 * 224 * 224), logits(std::size_t(batch) * 1000);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& p : images) p = normal(gen);
  const auto schedule = pruned ? rs::PruneSchedule::paper() : rs::PruneSchedule::none();
  return median_rate(batch, budget, [&] { model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule); });
}

double minilm(int batch, bool pruned, double budget, int seq, const char* weights) {
  const rs::BertConfig cfg = rs::BertConfig::minilm_l6();
  rs::BertEncoder<> model(rs::BertWeights::load(cfg, rs::io::SafeTensorsFile(weights)));
  std::vector<int> ids(std::size_t(batch) * seq), lengths(std::size_t(batch), seq);
  std::mt19937 gen(1);
  std::uniform_int_distribution<int> token(1000, cfg.vocab_size - 1);
  for (auto& id : ids) id = token(gen);
  for (int b = 0; b < batch; ++b) ids[std::size_t(b) * seq] = 101;  // [CLS]
  std::vector<float> pooled(std::size_t(batch) * cfg.dim);
  const auto schedule = pruned ? rs::PruneSchedule::drop({{1, 0.3}, {3, 0.3}}) : rs::PruneSchedule::none();
  return median_rate(batch, budget, [&] {
    model.forward(rs::Host{}, ids.data(), lengths.data(), batch, seq, pooled.data(), schedule);
  });
}

double resnet50(int batch, bool pruned, double budget) {
  rs::ResNet<> model(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0));
  std::vector<float> images(std::size_t(batch) * 3 * 224 * 224), logits(std::size_t(batch) * 1000);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& p : images) p = normal(gen);
  const auto schedule = pruned ? rs::LinePruneSchedule::paper() : rs::LinePruneSchedule::none();
  return median_rate(batch, budget, [&] { model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule); });
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "";
  if (!((argc == 5 && (name == "deit_s" || name == "deit_b" || name == "resnet50")) ||
        (argc == 7 && name == "minilm"))) {
    std::fprintf(stderr,
                 "usage: %s deit_s|deit_b|resnet50 BATCH pruned|unpruned SECONDS\n"
                 "       %s minilm BATCH pruned|unpruned SECONDS SEQ_LEN MODEL.safetensors\n",
                 argv[0], argv[0]);
    return 2;
  }
  const int batch = std::atoi(argv[2]);
  const bool pruned = std::string(argv[3]) == "pruned";
  const double budget = std::atof(argv[4]);
  try {
    const double rate = name == "minilm"     ? minilm(batch, pruned, budget, std::atoi(argv[5]), argv[6])
                        : name == "resnet50" ? resnet50(batch, pruned, budget)
                                             : deit(name, batch, pruned, budget);
    std::printf("%.4f\n", rate);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_timing: %s\n", e.what());
    return 1;
  }
}
