// minilm_embed: runs all-MiniLM-L6-v2 through repshift's post-LN blocks.
//   minilm_embed MODEL.safetensors IDS.bin OUT.bin [keep_ratio layer ...]
// IDS.bin: int32 batch, int32 tokens, int32 ids[batch * tokens], int32 lengths[batch].
// OUT.bin: float32 [batch, 384] mean-pooled embeddings (not normalised).
// Optional (keep_ratio, layer) pairs form a pruning schedule, CLS protected:
// each sample of N tokens keeps N - floor((1 - keep_ratio) N) at that layer.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>
#include <vector>

#include <repshift/models/bert.hpp>

namespace rs = repshift;

int main(int argc, char** argv) {
  if (argc < 4 || (argc - 4) % 2 != 0) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors IDS.bin OUT.bin [keep_ratio layer]...\n", argv[0]);
    return 2;
  }
  try {
    std::ifstream in(argv[2], std::ios::binary);
    std::int32_t shape[2] = {};
    in.read(reinterpret_cast<char*>(shape), sizeof shape);
    const int batch = shape[0], tokens = shape[1];
    if (!in || batch <= 0 || tokens <= 0) throw rs::FormatError(std::string("bad ids file ") + argv[2]);
    std::vector<int> ids(std::size_t(batch) * tokens), lengths(static_cast<std::size_t>(batch));
    in.read(reinterpret_cast<char*>(ids.data()), std::streamsize(ids.size() * 4));
    in.read(reinterpret_cast<char*>(lengths.data()), std::streamsize(lengths.size() * 4));
    if (!in) throw rs::FormatError(std::string("truncated ids file ") + argv[2]);

    // keep ratio k at a layer = the paper's drop ratio 1 - k there.
    std::vector<std::pair<int, double>> drops;
    for (int i = 4; i + 1 < argc; i += 2) drops.emplace_back(std::atoi(argv[i + 1]), 1.0 - std::atof(argv[i]));
    const auto schedule = rs::PruneSchedule::drop(drops);

    rs::BertEncoder<> model(rs::BertWeights::load(rs::BertConfig::minilm_l6(), rs::io::SafeTensorsFile(argv[1])));
    std::vector<float> pooled(std::size_t(batch) * model.config().dim);
    model.forward(rs::Host{}, ids.data(), lengths.data(), batch, tokens, pooled.data(), schedule, /*normalize=*/false);
    std::ofstream out(argv[3], std::ios::binary);
    out.write(reinterpret_cast<const char*>(pooled.data()), std::streamsize(pooled.size() * 4));
    return out ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minilm_embed: %s\n", e.what());
    return 1;
  }
}
