// 04_ablation: the policies of a DeiT chosen at run time. The names go
// through rs::with_policies, the library's one runtime -> template table,
// which instantiates exactly one VisionTransformer<Site, Importance, Compress>.
//
//   ablation_demo [--site attn|mlp|block] [--importance l1|l2|cosine|norm|random|cls_attn]
//                 [--compress prune|fuse|merge] [--keep 0.7] [--model deit_t|deit_s|deit_b] [--batch 4]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <repshift/dispatch.hpp>
#include <repshift/models/vit.hpp>

namespace rs = repshift;

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string site = "mlp", importance = "l2", compress = "prune", model_name = "deit_s";
  double keep = 0.7;
  int batch = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--site") site = value;
    else if (flag == "--importance") importance = value;
    else if (flag == "--compress") compress = value;
    else if (flag == "--keep") keep = std::atof(value.c_str());
    else if (flag == "--model") model_name = value;
    else if (flag == "--batch") batch = std::atoi(value.c_str());
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const rs::ViTConfig cfg = model_name == "deit_t"   ? rs::ViTConfig::deit_tiny()
                            : model_name == "deit_b" ? rs::ViTConfig::deit_base()
                                                     : rs::ViTConfig::deit_small();
  try {
    const auto weights = std::make_shared<const rs::ViTWeights>(rs::ViTWeights::random(cfg, 0));
    std::vector<float> images(std::size_t(batch) * 3 * cfg.image_size * cfg.image_size), logits(std::size_t(batch) * 1000);
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (auto& p : images) p = normal(gen);
    const auto schedule = rs::PruneSchedule::paper_layers(keep);

    rs::with_policies(site, importance, compress, [&](auto s, auto i, auto c) {
      using Site = decltype(s);
      using Importance = decltype(i);
      using Compress = decltype(c);
      std::printf("%s, batch %d: Block<Transformer, %s, %s, %s, PreNorm>, keep %.2f at layers 1, 4, 7\n",
                  model_name.c_str(), batch, Site::name, Importance::name, Compress::name, keep);
      rs::VisionTransformer<Site, Importance, Compress> model(weights);
      rs::ViTTrace trace;
      model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);  // warm-up
      double t0 = seconds_now();
      model.forward(rs::Host{}, images.data(), batch, logits.data());
      const double unpruned = seconds_now() - t0;
      t0 = seconds_now();
      model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);
      const double pruned = seconds_now() - t0;
      std::printf("tokens per layer:");
      for (int n : trace.tokens) std::printf(" %d", n);
      std::printf("\nimages/s: unpruned %.2f, pruned %.2f (%.2fx; one round each, see bench_ablation for medians)\n",
                  batch / unpruned, batch / pruned, unpruned / pruned);
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
