// 04_ablation: the policies of a DeiT or Vim chosen at run time. The names
// go through rs::with_policies, the library's one runtime -> template
// table, which instantiates exactly one model: VisionTransformer<Site,
// Importance, Compress> (backbone transformer) or VisionMamba<Importance>
// (backbone ssm_scan: site block, compress prune).
//
//   ablation_demo [--model deit_t|deit_s|deit_b|vim_t] [--site attn|mlp|block]
//                 [--importance l1|l2|cosine|norm|random|cls_attn|attn_received] [--compress prune|fuse|merge]
//                 [--keep 0.7] [--batch 4]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <repshift/api/dispatch.hpp>
#include <repshift/models/vim.hpp>
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
      fmt::print(stderr, "unknown flag {}\n", flag);
      return 2;
    }
  }
  const bool vim = model_name == "vim_t";
  const rs::ViTConfig cfg = model_name == "deit_t"   ? rs::ViTConfig::deit_tiny()
                            : model_name == "deit_b" ? rs::ViTConfig::deit_base()
                                                     : rs::ViTConfig::deit_small();
  if (vim && site == "mlp") site = "block";  // the only site an SsmScan block has
  try {
    std::vector<float> images(std::size_t(batch) * 3 * 224 * 224), logits(std::size_t(batch) * 1000);
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (auto& p : images) p = normal(gen);

    // Times one model unpruned and pruned; trace.tokens lists the tokens per layer.
    auto compare = [&](auto& model, const rs::PruneSchedule& schedule, auto& trace) {
      model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);  // warm-up
      double t0 = seconds_now();
      model.forward(rs::Host{}, images.data(), batch, logits.data());
      const double unpruned = seconds_now() - t0;
      t0 = seconds_now();
      model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);
      const double pruned = seconds_now() - t0;
      fmt::print("tokens per layer:");
      for (int n : trace.tokens) fmt::print(" {}", n);
      fmt::print("\nimages/s: unpruned {:.2f}, pruned {:.2f} ({:.2f}x; one round each, see bench_ablation for "
                 "medians)\n",
                 batch / unpruned, batch / pruned, unpruned / pruned);
    };

    rs::with_policies(vim ? "ssm_scan" : "transformer", site, importance, compress, [&](auto b, auto s, auto i, auto c) {
      using Backbone = decltype(b);
      using Site = decltype(s);
      using Importance = decltype(i);
      using Compress = decltype(c);
      if constexpr (std::is_same_v<Backbone, rs::policies::SsmScan>) {
        const auto schedule = rs::vim_schedule(1.0 - keep);
        fmt::print("vim_t, batch {}: Block<SsmScan, {}, {}, {}, PreNorm>, drop {:.2f} at blocks 0, 6, 12\n", batch,
                   Site::name, Importance::name, Compress::name, 1.0 - keep);
        rs::VisionMamba<Importance> model(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0));
        rs::VimTrace trace;
        compare(model, schedule, trace);
      } else {
        const auto schedule = rs::PruneSchedule::paper_layers(1.0 - keep);
        fmt::print("{}, batch {}: Block<Transformer, {}, {}, {}, PreNorm>, drop {:.2f} at blocks 0, 3, 6\n",
                   model_name, batch, Site::name, Importance::name, Compress::name, 1.0 - keep);
        rs::VisionTransformer<Site, Importance, Compress> model(rs::ViTWeights::random(cfg, 0));
        rs::ViTTrace trace;
        compare(model, schedule, trace);
      }
    });
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  return 0;
}
