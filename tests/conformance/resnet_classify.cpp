// resnet_classify: runs rs::ResNet (models/resnet.hpp, L2 line shift) on
// images, for conformance against torchvision's resnet50 with the same
// weights and a PyTorch implementation of the line-pruning rule.
//   resnet_classify MODEL.safetensors IMAGES.safetensors OUT.safetensors
//                   [--image S] [--layout nchw|nhwc] [--lines STAGE:N]...
// MODEL holds torchvision's resnet50 names (BatchNorm folded at load).
// IMAGES holds "images" [batch, 3, S, S] (f32, S = 224 unless --image).
// --lines STAGE:N removes N rows and N columns after 1-based STAGE (the
// paper: --lines 1:8 --lines 2:4). OUT gets "logits" [batch, 1000] and,
// per pruning step k, "rows.k" and "cols.k" [batch, kept] (the kept line
// indices, as f32).

#include <cstdio>
#include <string>
#include <vector>

#include <repshift/models/resnet.hpp>

#include "cli_args.hpp"

namespace rs = repshift;

int main(int argc, char** argv) {
  if (argc < 4 || (argc - 4) % 2 != 0) {
    std::fprintf(stderr,
                 "usage: %s MODEL.safetensors IMAGES.safetensors OUT.safetensors [--image S] [--layout nchw|nhwc] "
                 "[--lines STAGE:N]...\n",
                 argv[0]);
    return 2;
  }
  try {
    rs::ResNetConfig cfg = rs::ResNetConfig::resnet50();
    rs::MapLayout layout = rs::MapLayout::Nchw;
    rs::LinePruneSchedule schedule;
    for (int i = 4; i < argc; i += 2) {
      const std::string flag = argv[i], value = argv[i + 1];
      if (flag == "--image") {
        cfg.image_size = cli::int_arg(flag, value);
      } else if (flag == "--layout") {
        if (value != "nchw" && value != "nhwc") {
          throw rs::InvalidArgument("--layout = '" + value + "' is not nchw or nhwc");
        }
        layout = value == "nhwc" ? rs::MapLayout::Nhwc : rs::MapLayout::Nchw;
      } else if (flag == "--lines") {
        const auto colon = value.find(':');
        if (colon == std::string::npos) throw rs::InvalidArgument("--lines " + value + " is not STAGE:N");
        const int lines = cli::int_arg("--lines N", value.substr(colon + 1));
        schedule.steps.push_back({cli::int_arg("--lines STAGE", value.substr(0, colon)), lines, lines});
      } else {
        throw rs::InvalidArgument("unknown flag " + flag);
      }
    }

    const rs::io::SafeTensorsFile image_file(argv[2]);
    const auto& shape = image_file.info("images").shape;
    if (shape.empty()) throw rs::InvalidArgument("images has no batch dimension");
    const int batch = int(shape[0]);
    const auto images = image_file.load_f32("images", {batch, cfg.in_chans, cfg.image_size, cfg.image_size});

    rs::ResNet<> model(rs::ResNetWeights::load(cfg, rs::io::SafeTensorsFile(argv[1])));
    model.set_layout(layout);
    std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
    rs::ResNetTrace trace;
    model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);

    std::vector<std::vector<float>> lines;
    for (std::size_t k = 0; k < trace.kept_rows.size(); ++k) {
      lines.emplace_back(trace.kept_rows[k].begin(), trace.kept_rows[k].end());
      lines.emplace_back(trace.kept_cols[k].begin(), trace.kept_cols[k].end());
    }
    std::vector<rs::io::NamedTensor> out{{"logits", {batch, cfg.num_classes}, logits.data()}};
    for (std::size_t j = 0; j < lines.size(); ++j) {
      const std::string name = (j % 2 == 0 ? "rows." : "cols.") + std::to_string(j / 2);
      out.push_back({name, {batch, std::int64_t(lines[j].size()) / batch}, lines[j].data()});
    }
    rs::io::save_safetensors(argv[3], out);
    std::printf("map size entering each stage:");
    for (int s : trace.sizes) std::printf(" %d", s);
    std::printf("\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resnet_classify: %s\n", e.what());
    return 1;
  }
}
