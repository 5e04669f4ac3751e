// Fidelity of pruning on real weights, no fine-tuning: all-MiniLM-L6-v2
// sentence embeddings with tokens pruned by every (Site x Importance) at
// several keep rates, against the unpruned embeddings of the same model.
//   fidelity_minilm MODEL.safetensors IDS.bin
// IDS.bin: int32 count, then per sentence int32 length and its ids.
// Sentences 2i and 2i+1 are paraphrases, for the retrieval check.
// Prints one Markdown row per configuration:
//   mean cosine(pruned, unpruned) | nearest-neighbour agreement with the
//   unpruned model | paraphrase retrieval accuracy
// Pruning: keep rate r at layers 1 and 3 (of 6), [CLS] protected; each
// sentence runs alone, so keep counts follow its own length.

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <repshift/models/bert.hpp>
#include <repshift/api/sweep.hpp>

namespace rs = repshift;
namespace P = rs::policies;

namespace {

constexpr double kKeepRates[] = {0.9, 0.7, 0.5};

struct Corpus {
  std::vector<std::vector<int>> sentences;
};

Corpus read_ids(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::int32_t count = 0;
  in.read(reinterpret_cast<char*>(&count), 4);
  Corpus c;
  for (int i = 0; in && i < count; ++i) {
    std::int32_t len = 0;
    in.read(reinterpret_cast<char*>(&len), 4);
    std::vector<int> ids(std::size_t(len > 0 ? len : 0));
    in.read(reinterpret_cast<char*>(ids.data()), std::streamsize(ids.size() * 4));
    c.sentences.push_back(std::move(ids));
  }
  if (!in || int(c.sentences.size()) != count) throw rs::FormatError(fmt::format("bad ids file {}", path));
  return c;
}

using Embeddings = std::vector<std::vector<float>>;

using Weights = std::shared_ptr<const rs::BertWeights>;

template <class Site, class Importance>
Embeddings embed(const Weights& w, const Corpus& corpus, double keep) {
  rs::BertEncoder<Site, Importance> model(w);
  const auto schedule = keep < 1.0 ? rs::PruneSchedule::drop({{1, 1.0 - keep}, {3, 1.0 - keep}}) : rs::PruneSchedule::none();
  Embeddings out;
  for (const auto& ids : corpus.sentences) {
    std::vector<float> e(std::size_t(w->config.dim));
    const int len = int(ids.size());
    model.forward(rs::Host{}, ids.data(), &len, 1, len, e.data(), schedule, /*normalize=*/true);
    out.push_back(std::move(e));
  }
  return out;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

int nearest(const Embeddings& e, std::size_t i) {
  int best = -1;
  double best_sim = -2;
  for (std::size_t j = 0; j < e.size(); ++j) {
    if (j == i) continue;
    const double s = dot(e[i], e[j]);
    if (s > best_sim) best_sim = s, best = int(j);
  }
  return best;
}

struct Fidelity {
  double cosine, nn_agreement, paraphrase;
};

Fidelity compare(const Embeddings& pruned, const Embeddings& full) {
  Fidelity f{0, 0, 0};
  const std::size_t n = full.size();
  for (std::size_t i = 0; i < n; ++i) {
    f.cosine += dot(pruned[i], full[i]) / double(n);
    f.nn_agreement += (nearest(pruned, i) == nearest(full, i)) / double(n);
    f.paraphrase += (nearest(pruned, i) == int(i ^ 1)) / double(n);
  }
  return f;
}

void row(const char* site, const char* importance, double keep, const Fidelity& f) {
  fmt::print("| {} | {} | {:.1f} | {:.4f} | {:.3f} | {:.3f} |\n", site, importance, keep, f.cosine, f.nn_agreement,
             f.paraphrase);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fmt::print(stderr, "usage: {} MODEL.safetensors IDS.bin\n", argv[0]);
    return 2;
  }
  try {
    const Weights w = std::make_shared<const rs::BertWeights>(
        rs::BertWeights::load(rs::BertConfig::minilm_l6(), rs::io::SafeTensorsFile(argv[1])));
    const Corpus corpus = read_ids(argv[2]);
    const Embeddings full = embed<P::Mlp, P::L2>(w, corpus, 1.0);
    const Fidelity base = compare(full, full);
    fmt::print("| site | importance | keep rate at layers 1, 3 | cosine to unpruned | NN agreement | "
               "paraphrase retrieval |\n");
    fmt::print("|---|---|---:|---:|---:|---:|\n");
    row("-", "unpruned", 1.0, base);
    // Pruning only: Fuse changes what is pooled, not which tokens rank high.
    rs::for_each_combination(rs::AllSites{}, rs::AllImportances{}, rs::TypeList<P::Prune>{}, [&](auto s, auto i, auto) {
      using Site = decltype(s);
      using Importance = decltype(i);
      for (double keep : kKeepRates)
        row(Site::name, Importance::name, keep, compare(embed<Site, Importance>(w, corpus, keep), full));
    });
    // The paper's control: keep the top 50% by MLP-site L2 shift vs the bottom 50%.
    row("mlp", "l2, top 50%", 0.5, compare(embed<P::Mlp, P::L2>(w, corpus, 0.5), full));
    row("mlp", "l2, bottom 50%", 0.5, compare(embed<P::Mlp, P::Inverted<P::L2>>(w, corpus, 0.5), full));
    // The other reading of the score: the residual update D(x + F(x), x), side by side.
    for (double keep : kKeepRates) {
      row("attn_update", "l2", keep, compare(embed<P::Update<P::Attention>, P::L2>(w, corpus, keep), full));
      row("mlp_update", "l2", keep, compare(embed<P::Update<P::Mlp>, P::L2>(w, corpus, keep), full));
    }
    row("mlp_update", "l2, top 50%", 0.5, compare(embed<P::Update<P::Mlp>, P::L2>(w, corpus, 0.5), full));
    row("mlp_update", "l2, bottom 50%", 0.5, compare(embed<P::Update<P::Mlp>, P::Inverted<P::L2>>(w, corpus, 0.5), full));
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "fidelity_minilm: {}\n", e.what());
    return 1;
  }
}
