// all-MiniLM-L6-v2 on a batch of sentences of realistic, unequal lengths:
// padded computation (every sentence computed at the batch's longest
// length, as a padded-and-masked encoder pays) against packed sentences
// (FlashAttention's varlen layout: only real tokens are computed), each
// unpruned and pruned (keep 0.7 at layers 1 and 3, each sentence's count
// from its own length). Padded input with lengths (BertEncoder::forward)
// packs first, so it runs as fast as packed: measured too.
//   bench_minilm_varlen MODEL.safetensors [BATCH=32] [ROUNDS=7] [JSON]
// Lengths: seeded, log-uniform in [8, 256]. Variants interleave round by
// round; medians of ROUNDS. Prints a table and, with JSON, writes it.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <omp.h>

#include <repshift/models/bert.hpp>

namespace rs = repshift;

namespace {

struct Variant {
  std::string name;
  std::function<void()> run;
  std::vector<double> seconds;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: {} MODEL.safetensors [BATCH=32] [ROUNDS=7] [JSON]\n", argv[0]);
    return 2;
  }
  try {
    const int batch = argc > 2 ? std::atoi(argv[2]) : 32;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 7;
    const rs::BertConfig cfg = rs::BertConfig::minilm_l6();
    const auto weights = std::make_shared<const rs::BertWeights>(rs::BertWeights::load(cfg, rs::io::SafeTensorsFile(argv[1])));
    rs::BertEncoder<> model(weights);

    std::mt19937 gen(7);
    std::uniform_real_distribution<double> log_len(std::log(8.0), std::log(256.0));
    std::uniform_int_distribution<int> token(1000, cfg.vocab_size - 1);
    std::vector<int> lengths(static_cast<std::size_t>(batch));
    for (auto& n : lengths) n = int(std::lround(std::exp(log_len(gen))));
    const int longest = *std::max_element(lengths.begin(), lengths.end());
    const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
    const long real_tokens = cu.back(), padded_tokens = long(batch) * longest;
    std::vector<int> padded(static_cast<std::size_t>(padded_tokens)), packed(static_cast<std::size_t>(real_tokens));
    for (int b = 0; b < batch; ++b) {
      for (int t = 0; t < longest; ++t) {
        const int id = t == 0 ? 101 : token(gen);  // [CLS] first
        padded[std::size_t(b) * longest + t] = id;
        if (t < lengths[std::size_t(b)]) packed[std::size_t(cu[std::size_t(b)] + t)] = id;
      }
    }
    const std::vector<int> full(std::size_t(batch), longest);
    std::vector<float> pooled(std::size_t(batch) * cfg.dim);
    const auto none = rs::PruneSchedule::none();
    const auto pruned = rs::PruneSchedule::drop({{1, 0.3}, {3, 0.3}});

    std::vector<Variant> variants;
    for (const auto* schedule : {&none, &pruned}) {
      const std::string tag = schedule == &none ? "unpruned" : "pruned";
      variants.push_back({"padded compute, " + tag, [&, schedule] {
                            model.forward(rs::Host{}, padded.data(), full.data(), batch, longest, pooled.data(), *schedule);
                          }, {}});
      variants.push_back({"padded input + lengths, " + tag, [&, schedule] {
                            model.forward(rs::Host{}, padded.data(), lengths.data(), batch, longest, pooled.data(), *schedule);
                          }, {}});
      variants.push_back({"packed (cu_seqlens), " + tag, [&, schedule] {
                            model.forward_packed(rs::Host{}, packed.data(), cu.data(), batch, pooled.data(), *schedule);
                          }, {}});
    }
    for (auto& v : variants) v.run();  // warm-up: scratch, page faults
    for (int r = 0; r < rounds; ++r) {
      for (auto& v : variants) {
        const auto t0 = std::chrono::steady_clock::now();
        v.run();
        v.seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    }

    fmt::print("all-MiniLM-L6-v2, batch {}, lengths 8-256 (log-uniform, seed 7): {} real tokens, {} padded "
               "({:.2f}x), {} OpenMP threads, medians of {} interleaved rounds\n",
               batch, real_tokens, padded_tokens, double(padded_tokens) / real_tokens, omp_get_max_threads(), rounds);
    fmt::print("{:<36} {:>12} {:>14}\n", "variant", "sentences/s", "vs padded");
    // The JSON's numbers in {:g}, as the ostream it replaced wrote them.
    std::ofstream json;
    if (argc > 4) {
      json.open(argv[4]);
      json << fmt::format("{{\n  \"batch\": {}, \"real_tokens\": {}, \"padded_tokens\": {}, \"threads\": {}, "
                          "\"rounds\": {},\n  \"variants\": [\n",
                          batch, real_tokens, padded_tokens, omp_get_max_threads(), rounds);
    }
    for (std::size_t i = 0; i < variants.size(); ++i) {
      const double rate = batch / median(variants[i].seconds);
      const double base = batch / median(variants[i / 3 * 3].seconds);
      fmt::print("{:<36} {:12.1f} {:13.2f}x\n", variants[i].name, rate, rate / base);
      if (json.is_open()) {
        json << fmt::format("    {{\"name\": \"{}\", \"sentences_per_s\": {:g}, \"vs_padded\": {:g}}}{}\n",
                            variants[i].name, rate, rate / base, i + 1 < variants.size() ? "," : "");
      }
    }
    if (json.is_open()) json << "  ]\n}\n";
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_minilm_varlen: {}\n", e.what());
    return 1;
  }
}
