// 02_vit_prune: DeiT on the CPU, unpruned vs the paper's schedule (drop
// 20% at blocks 0, 3, 6, CLS protected), measured side by side: rounds
// alternate between the two models so machine noise hits both alike.
//
//   vit_prune_demo [model=deit_s|deit_t|deit_b] [batch=16] [rounds=3]
//
// Weights are random (timm's init); speed does not depend on their values.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <repshift/models/vit.hpp>

namespace rs = repshift;

namespace {

double seconds_now() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

void progress(int done, int total, const char* what) {
  const int width = 30, filled = width * done / total;
  fmt::print(stderr, "\r  [{}{}] {}/{} {:<24}", std::string(std::size_t(filled), '#'),
             std::string(std::size_t(width - filled), ' '), done, total, what);
  if (done == total) fmt::print(stderr, "\n");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "deit_s";
  const int batch = argc > 2 ? std::atoi(argv[2]) : 16;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  rs::ViTConfig cfg;
  if (name == "deit_t") cfg = rs::ViTConfig::deit_tiny();
  else if (name == "deit_s") cfg = rs::ViTConfig::deit_small();
  else if (name == "deit_b") cfg = rs::ViTConfig::deit_base();
  else {
    fmt::print(stderr, "unknown model '{}'\nusage: {} [deit_t|deit_s|deit_b] [batch>0] [rounds>0]\n", name, argv[0]);
    return 2;
  }
  if (batch <= 0 || rounds <= 0) {
    fmt::print(stderr, "batch = {} and rounds = {} must be > 0\n", batch, rounds);
    return 2;
  }

  fmt::print("repshift: {} (dim {}, {} heads, {} layers), batch {}, {} CPU threads, random weights\n", name, cfg.dim,
             cfg.heads, cfg.depth, batch, rs::cpu::thread_count(rs::Host{}));
  const rs::PruneSchedule paper = rs::PruneSchedule::paper();
  const auto counts = paper.token_counts(cfg.tokens(), cfg.depth);
  fmt::print("\ntokens entering each layer\n  layer      ");
  for (int l = 0; l < cfg.depth; ++l) fmt::print("{:4}", l);
  fmt::print("   out\n  unpruned   ");
  for (int l = 0; l <= cfg.depth; ++l) fmt::print("{:4}{}", cfg.tokens(), l == cfg.depth - 1 ? "  " : "");
  fmt::print("\n  pruned     ");
  for (int l = 0; l <= cfg.depth; ++l) fmt::print("{:4}{}", counts[std::size_t(l)], l == cfg.depth - 1 ? "  " : "");
  fmt::print("\n  (MLP-site L2 shift, keep n - floor(0.2 n) at blocks 0, 3, 6, CLS always kept)\n\n");

  rs::VisionTransformer<rs::policies::Mlp, rs::policies::L2> model(rs::ViTWeights::random(cfg, 0));
  std::vector<float> images(std::size_t(batch) * 3 * cfg.image_size * cfg.image_size);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& p : images) p = normal(gen);
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);

  // Warm-up: sizes the workspaces and the BLAS thread pool.
  model.forward(rs::Host{}, images.data(), batch, logits.data());
  model.forward(rs::Host{}, images.data(), batch, logits.data(), paper);

  std::vector<double> unpruned_s, pruned_s;
  rs::ViTTrace trace;
  for (int r = 0; r < rounds; ++r) {
    progress(2 * r, 2 * rounds, "unpruned forward");
    double t0 = seconds_now();
    model.forward(rs::Host{}, images.data(), batch, logits.data());
    unpruned_s.push_back(seconds_now() - t0);
    progress(2 * r + 1, 2 * rounds, "pruned forward");
    t0 = seconds_now();
    model.forward(rs::Host{}, images.data(), batch, logits.data(), paper, &trace);
    pruned_s.push_back(seconds_now() - t0);
  }
  progress(2 * rounds, 2 * rounds, "done");
  std::sort(unpruned_s.begin(), unpruned_s.end());
  std::sort(pruned_s.begin(), pruned_s.end());
  const double u = batch / unpruned_s[unpruned_s.size() / 2], p = batch / pruned_s[pruned_s.size() / 2];

  fmt::print("\nkept tokens of image 0 after layer {} (patch grid {}x{}, # kept):\n", trace.pruned_layers.back(),
             cfg.grid(), cfg.grid());
  const auto& last = trace.source.back();
  const int keep = trace.tokens.back();
  std::vector<char> kept(std::size_t(cfg.num_patches()), '.');
  for (int k = 0; k < keep; ++k)
    if (last[std::size_t(k)] > 0) kept[std::size_t(last[std::size_t(k)] - 1)] = '#';
  for (int y = 0; y < cfg.grid(); ++y) {
    fmt::print("    ");
    for (int x = 0; x < cfg.grid(); ++x) fmt::print("{} ", kept[std::size_t(y * cfg.grid() + x)]);
    fmt::print("\n");
  }
  fmt::print("\nimages/s (median of {} interleaved rounds)\n"
             "  unpruned  {:8.2f}\n  pruned    {:8.2f}\n  speedup   {:8.2f}x\n",
             rounds, u, p, p / u);
  return 0;
}
