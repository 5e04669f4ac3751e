// minilm_embed: runs all-MiniLM-L6-v2 through repshift's post-LN blocks.
//   minilm_embed MODEL.safetensors IDS.bin OUT.bin [keep_ratio layer ...]
// IDS.bin: int32 batch, int32 tokens, int32 ids[batch * tokens], int32 lengths[batch].
// OUT.bin: float32 [batch, 384] mean-pooled embeddings (not normalised).
// Optional (keep_ratio, layer) pairs form a pruning schedule, CLS protected:
// each sample of N tokens keeps N - floor((1 - keep_ratio) N) at that layer,
// keep_ratio in (0, 1].

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <repshift/models/bert.hpp>

#include "cli_args.hpp"

namespace rs = repshift;

namespace {

struct Sentences {
  int batch = 0, tokens = 0;
  std::vector<int> ids, lengths;
};

// The whole file is checked against its header before anything is allocated.
Sentences read_ids(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw rs::FormatError(fmt::format("cannot open ids file '{}': {}", path, std::strerror(errno)));
  const std::int64_t bytes = in.tellg();
  in.seekg(0);
  std::int32_t shape[2] = {};
  if (bytes < std::int64_t(sizeof shape) || !in.read(reinterpret_cast<char*>(shape), sizeof shape)) {
    throw rs::FormatError(fmt::format("ids file '{}' has {} bytes, fewer than its 8-byte header", path, bytes));
  }
  Sentences s;
  s.batch = shape[0];
  s.tokens = shape[1];
  if (s.batch <= 0 || s.tokens <= 0) {
    throw rs::FormatError(
        fmt::format("ids file '{}': batch = {} and tokens = {} must be > 0", path, s.batch, s.tokens));
  }
  const std::int64_t want = 4 * (2 + std::int64_t(s.batch) * s.tokens + s.batch);
  if (bytes != want) {
    throw rs::FormatError(fmt::format("ids file '{}' has {} bytes; batch = {} and tokens = {} need {}", path, bytes,
                                      s.batch, s.tokens, want));
  }
  s.ids.resize(std::size_t(s.batch) * s.tokens);
  s.lengths.resize(std::size_t(s.batch));
  in.read(reinterpret_cast<char*>(s.ids.data()), std::streamsize(s.ids.size() * 4));
  in.read(reinterpret_cast<char*>(s.lengths.data()), std::streamsize(s.lengths.size() * 4));
  if (!in) throw rs::FormatError(fmt::format("reading ids file '{}' failed", path));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || (argc - 4) % 2 != 0) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors IDS.bin OUT.bin [keep_ratio layer]...\n", argv[0]);
    return 2;
  }
  try {
    const Sentences s = read_ids(argv[2]);

    // keep ratio k at a layer = the paper's drop ratio 1 - k there.
    std::vector<std::pair<int, double>> drops;
    for (int i = 4; i + 1 < argc; i += 2) {
      const double keep = cli::real_arg("keep_ratio", argv[i]);
      if (!(keep > 0.0 && keep <= 1.0)) {
        throw rs::InvalidArgument(fmt::format("keep_ratio = {} must be in (0, 1]", argv[i]));
      }
      drops.emplace_back(cli::int_arg("layer", argv[i + 1]), 1.0 - keep);
    }
    const auto schedule = rs::PruneSchedule::drop(drops);

    rs::BertEncoder<> model(rs::BertWeights::load(rs::BertConfig::minilm_l6(), rs::io::SafeTensorsFile(argv[1])));
    std::vector<float> pooled(std::size_t(s.batch) * model.config().dim);
    model.forward(rs::Host{}, s.ids.data(), s.lengths.data(), s.batch, s.tokens, pooled.data(), schedule,
                  /*normalize=*/false);
    std::ofstream out(argv[3], std::ios::binary);
    out.write(reinterpret_cast<const char*>(pooled.data()), std::streamsize(pooled.size() * 4));
    if (!out) throw rs::FormatError(fmt::format("writing '{}' failed", argv[3]));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minilm_embed: %s\n", e.what());
    return 1;
  }
}
