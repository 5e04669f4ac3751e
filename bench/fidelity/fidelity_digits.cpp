// Fidelity of pruning on a trained model, no fine-tuning: test accuracy of
// the digits ViT (data/digits_vit/, trained by train_digits_vit.py) or of
// the video transformer on digit clips (data/digit_clips/,
// train_digit_clips.py) with tokens pruned by every (Site x Importance) at
// several keep rates.
//   fidelity_digits DATA_DIR [--clips]
// Prints one Markdown row per configuration: accuracy, and agreement of the
// predictions with the unpruned model's.
// Pruning: keep rate r at layers 1 and 3 (of 6), the class token protected
// (the clip model has none: nothing protected, and CLS attention does not
// apply); every (Site x Importance) prunes, then MLP-site L2 also fuses and
// merges.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <repshift/models/vit.hpp>
#include <repshift/api/sweep.hpp>

namespace rs = repshift;
namespace P = rs::policies;

namespace {

constexpr double kKeepRates[] = {0.9, 0.7, 0.5};

struct TestSet {
  int count = 0;
  std::vector<float> images;
  std::vector<int> labels;
};

TestSet load_test_set(const std::string& path, const rs::ViTConfig& cfg) {
  const rs::io::SafeTensorsFile file(path);
  TestSet t;
  t.count = int(file.info("labels").shape.at(0));
  t.images = cfg.frames > 1
                 ? file.load_f32("clips", {t.count, cfg.in_chans, cfg.frames, cfg.image_size, cfg.image_size})
                 : file.load_f32("images", {t.count, cfg.in_chans, cfg.image_size, cfg.image_size});
  for (float l : file.load_f32("labels", {t.count})) t.labels.push_back(int(l));
  return t;
}

using Weights = std::shared_ptr<const rs::ViTWeights>;

template <class Site, class Importance, class Compress = P::Prune>
std::vector<int> predict(const Weights& w, const TestSet& t, double keep) {
  rs::VisionTransformer<Site, Importance, Compress> model(w);
  const int protect = w->config.class_token() ? 1 : 0;
  const auto schedule = keep < 1.0 ? rs::PruneSchedule::drop({{1, 1.0 - keep}, {3, 1.0 - keep}}, protect)
                                   : rs::PruneSchedule::none(protect);
  const int classes = w->config.num_classes;
  std::vector<float> logits(std::size_t(t.count) * classes);
  model.forward(rs::Host{}, t.images.data(), t.count, logits.data(), schedule);
  std::vector<int> pred(std::size_t(t.count));
  for (int i = 0; i < t.count; ++i) {
    const float* l = logits.data() + std::size_t(i) * classes;
    pred[std::size_t(i)] = int(std::max_element(l, l + classes) - l);
  }
  return pred;
}

double agreement(const std::vector<int>& a, const std::vector<int>& b) {
  int same = 0;
  for (std::size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return double(same) / double(a.size());
}

void row(const char* site, const char* importance, double keep, const std::vector<int>& pred,
         const TestSet& t, const std::vector<int>& full) {
  fmt::print("| {} | {} | {:.1f} | {:.4f} | {:.4f} |\n", site, importance, keep, agreement(pred, t.labels),
             agreement(pred, full));
}

}  // namespace

int main(int argc, char** argv) {
  const bool clips = argc == 3 && std::string(argv[2]) == "--clips";
  if (argc != 2 && !clips) {
    fmt::print(stderr, "usage: {} DATA_DIR [--clips]   (data/digits_vit, or data/digit_clips --clips)\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[1];
    const rs::ViTConfig cfg = clips ? rs::ViTConfig::digit_clips() : rs::ViTConfig::digits();
    const Weights w = std::make_shared<const rs::ViTWeights>(
        rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(dir + "/model.safetensors")));
    const TestSet t = load_test_set(dir + "/test_set.safetensors", cfg);
    const std::vector<int> full = predict<P::Mlp, P::L2>(w, t, 1.0);
    fmt::print("| site | importance | keep rate at layers 1, 3 | test accuracy | agreement with unpruned |\n");
    fmt::print("|---|---|---:|---:|---:|\n");
    row("-", "unpruned", 1.0, full, t, full);
    rs::for_each_combination(rs::AllSites{}, rs::AllImportances{}, rs::TypeList<P::Prune>{}, [&](auto s, auto i, auto) {
      using Site = decltype(s);
      using Importance = decltype(i);
      if (!cfg.class_token() && P::reads_class_token<Importance>()) return;  // no class token to read (refused)
      for (double keep : kKeepRates) row(Site::name, Importance::name, keep, predict<Site, Importance>(w, t, keep), t, full);
    });
    // The paper's control: keep the top 50% by MLP-site L2 shift vs the bottom 50%.
    row("mlp", "l2, top 50%", 0.5, predict<P::Mlp, P::L2>(w, t, 0.5), t, full);
    row("mlp", "l2, bottom 50%", 0.5, predict<P::Mlp, P::Inverted<P::L2>>(w, t, 0.5), t, full);
    // The other reading of the score: the residual update D(x + F(x), x), side by side.
    for (double keep : kKeepRates) {
      row("attn_update", "l2", keep, predict<P::Update<P::Attention>, P::L2>(w, t, keep), t, full);
      row("mlp_update", "l2", keep, predict<P::Update<P::Mlp>, P::L2>(w, t, keep), t, full);
    }
    row("mlp_update", "l2, top 50%", 0.5, predict<P::Update<P::Mlp>, P::L2>(w, t, 0.5), t, full);
    row("mlp_update", "l2, bottom 50%", 0.5, predict<P::Update<P::Mlp>, P::Inverted<P::L2>>(w, t, 0.5), t, full);
    // The other compress policies, same importance (Merge halves the free tokens at most per layer).
    for (double keep : kKeepRates) {
      row("mlp", "l2, fuse", keep, predict<P::Mlp, P::L2, P::Fuse>(w, t, keep), t, full);
      const int protect = cfg.class_token() ? 1 : 0;
      if (rs::PruneSchedule::drop({{1, 1.0 - keep}, {3, 1.0 - keep}}, protect).reachable<P::Merge>(cfg.tokens(), cfg.depth))
        row("mlp", "l2, merge", keep, predict<P::Mlp, P::L2, P::Merge>(w, t, keep), t, full);
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "fidelity_digits: {}\n", e.what());
    return 1;
  }
}
