// deit_timing: images/s of repshift's DeiT on the CPU, for the peer script
// (bench/peer/deit_vs_timm.py), which interleaves it with PyTorch runs.
//   deit_timing deit_s|deit_b BATCH pruned|unpruned SECONDS
// Prints the median images/s over forward passes run for about SECONDS.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <repshift/models/vit.hpp>

namespace rs = repshift;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s deit_s|deit_b BATCH pruned|unpruned SECONDS\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1], mode = argv[3];
  const int batch = std::atoi(argv[2]);
  const double budget = std::atof(argv[4]);
  try {
    const rs::ViTConfig cfg = name == "deit_b" ? rs::ViTConfig::deit_base() : rs::ViTConfig::deit_small();
    rs::VisionTransformer<> model(rs::ViTWeights::random(cfg, 0));
    std::vector<float> images(std::size_t(batch) * 3 * 224 * 224), logits(std::size_t(batch) * 1000);
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (auto& p : images) p = normal(gen);
    const auto schedule = mode == "pruned" ? rs::PruneSchedule::paper() : rs::PruneSchedule::none();
    model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule);  // warm-up
    std::vector<double> rates;
    const auto start = std::chrono::steady_clock::now();
    while (rates.size() < 3 || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < budget) {
      const auto t0 = std::chrono::steady_clock::now();
      model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule);
      rates.push_back(batch / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(rates.begin(), rates.end());
    std::printf("%.4f\n", rates[rates.size() / 2]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "deit_timing: %s\n", e.what());
    return 1;
  }
}
