// video_classify: runs rs::VideoTransformer (models/video.hpp) on clips, for
// conformance against a PyTorch implementation of the same UMT-style model.
//   video_classify MODEL.safetensors CLIPS.safetensors OUT.safetensors
//                  [--frames F] [--tubelet t] [--image S] [--patch p] [--dim D] [--depth L]
//                  [--heads H] [--mlp M] [--classes K] [--drop LAYER:RATIO]...
// The config starts from ViTConfig::umt_base(F, t) and the flags override
// it. CLIPS holds "clips" [batch, 3, F, S, S] (f32). OUT gets "logits"
// [batch, K] and, per pruning layer l, "kept.l" [batch, keep] (the kept
// token indices into that layer's input, as f32).

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <repshift/models/video.hpp>

#include "cli_args.hpp"

namespace rs = repshift;

int main(int argc, char** argv) {
  if (argc < 4 || (argc - 4) % 2 != 0) {
    std::fprintf(stderr,
                 "usage: %s MODEL.safetensors CLIPS.safetensors OUT.safetensors [--frames F] [--tubelet t] "
                 "[--image S] [--patch p] [--dim D] [--depth L] [--heads H] [--mlp M] [--classes K] "
                 "[--drop LAYER:RATIO]...\n",
                 argv[0]);
    return 2;
  }
  try {
    int frames = 8, tubelet = 1;
    std::vector<std::pair<std::string, int>> sizes;
    std::vector<std::pair<int, double>> drops;
    for (int i = 4; i < argc; i += 2) {
      const std::string flag = argv[i], value = argv[i + 1];
      if (flag == "--drop") {
        const auto colon = value.find(':');
        if (colon == std::string::npos) throw rs::InvalidArgument("video_classify: --drop " + value + " is not LAYER:RATIO");
        drops.emplace_back(cli::int_arg("--drop layer", value.substr(0, colon)),
                           cli::real_arg("--drop ratio", value.substr(colon + 1)));
      } else if (flag == "--frames") {
        frames = cli::int_arg(flag, value);
      } else if (flag == "--tubelet") {
        tubelet = cli::int_arg(flag, value);
      } else {
        sizes.emplace_back(flag, cli::int_arg(flag, value));
      }
    }
    rs::ViTConfig cfg = rs::ViTConfig::umt_base(frames, tubelet);
    for (const auto& [flag, v] : sizes) {
      if (flag == "--image") cfg.image_size = v;
      else if (flag == "--patch") cfg.patch_size = v;
      else if (flag == "--dim") cfg.dim = v;
      else if (flag == "--depth") cfg.depth = v;
      else if (flag == "--heads") cfg.heads = v;
      else if (flag == "--mlp") cfg.mlp_hidden = v;
      else if (flag == "--classes") cfg.num_classes = v;
      else throw rs::InvalidArgument("video_classify: unknown flag " + flag);
    }

    const rs::io::SafeTensorsFile clip_file(argv[2]);
    const auto& shape = clip_file.info("clips").shape;
    if (shape.empty()) throw rs::InvalidArgument("video_classify: clips has no batch dimension");
    const int batch = int(shape[0]);
    const auto clips = clip_file.load_f32("clips", {batch, cfg.in_chans, cfg.frames, cfg.image_size, cfg.image_size});

    rs::VideoTransformer<> model(rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(argv[1])));
    std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
    rs::ViTTrace trace;
    model.forward(rs::Host{}, clips.data(), batch, logits.data(), rs::PruneSchedule::drop(drops), &trace);

    std::vector<std::vector<float>> kept;
    std::vector<rs::io::NamedTensor> out{{"logits", {batch, cfg.num_classes}, logits.data()}};
    for (std::size_t k = 0; k < trace.pruned_layers.size(); ++k)
      kept.emplace_back(trace.keep_idx[k].begin(), trace.keep_idx[k].end());
    for (std::size_t k = 0; k < kept.size(); ++k) {
      const std::int64_t keep = std::int64_t(kept[k].size()) / batch;
      out.push_back({"kept." + std::to_string(trace.pruned_layers[k]), {batch, keep}, kept[k].data()});
    }
    rs::io::save_safetensors(argv[3], out);
    std::printf("tokens per layer:");
    for (int t : trace.tokens) std::printf(" %d", t);
    std::printf("\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "video_classify: %s\n", e.what());
    return 1;
  }
}
