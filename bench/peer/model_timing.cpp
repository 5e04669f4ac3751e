// model_timing: images (or sequences) per second of repshift's models on the
// CPU, for the peer script (bench/peer/vs_pytorch.py), which interleaves it
// with PyTorch runs.
//   model_timing deit_s|deit_b BATCH pruned|unpruned[_bf16] SECONDS
//   model_timing minilm BATCH pruned|unpruned SECONDS SEQ_LEN MODEL.safetensors
//   model_timing resnet50 BATCH pruned|unpruned SECONDS
//   model_timing umt_b BATCH flash|map|pruned|attn_pruned SECONDS FRAMES
//   model_timing attention_rss TOKENS flash|map
// Prints the median rate over forward passes run for about SECONDS, after
// 1.5 s of untimed ones (MODEL_TIMING_TRACE=1 adds the rate per half second).
// _bf16: the dense layers in bfloat16 with f32 accumulation
// (rs::DenseMath::Bf16; needs AVX512-BF16 or AMX).
// Pruned: DeiT = the paper's schedule (drop 0.2 at blocks 0, 3, 6: 197 ->
// 158 -> 127 -> 102); MiniLM = drop 0.3 at layers 1 and 3; MLP-site L2 for
// both, CLS protected.
// UMT-B (models/video.hpp, FRAMES x 196 tokens, random weights): flash =
// unpruned; map = unpruned on the plain attention path that writes the
// N x N map (the paper's non-flash baseline, via AttentionReceived with
// nothing pruned); pruned = the paper's video retrieval schedule (r = 0.2
// at blocks 0, 1, 2, MLP-site L2); attn_pruned = the same schedule ranked by
// attention received (mean over heads and queries) on the map path.
// attention_rss: one UMT-B attention (12 heads x 64) over TOKENS tokens on
// the flash or the map path, run once; prints the process's peak RSS in MiB.
// ResNet-50 = LinePruneSchedule::paper() (8 + 8 lines after stage 1, 4 + 4
// after stage 2, L2 shift of the stage's last block), default layout
// (NHWC where the build has oneDNN).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>

#include <fmt/format.h>

#include <repshift/models/bert.hpp>
#include <repshift/models/resnet.hpp>
#include <repshift/models/video.hpp>
#include <repshift/models/vit.hpp>


namespace rs = repshift;

namespace {

// Forwards run for this long before any is timed. Besides scratch allocation,
// page faults and oneDNN's first-call JIT, it skips most of a slow start of
// this VM: in some processes (about 1 in 10 here) the two busy threads
// deliver one thread's throughput from the start for 0.5-4 s, at full CPU
// time (docs/performance.md, "Noise"; MODEL_TIMING_TRACE=1 shows it). The
// Python side (vs_pytorch.py's rate) warms up for the same time.
constexpr double kWarmupSeconds = 1.5;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

// MODEL_TIMING_TRACE=1: the rate and the process's CPU use (cores busy) in
// each half second of the run, warm-up included, on stderr.
struct RateTrace {
  struct Window { double rate, cores; };
  bool on = std::getenv("MODEL_TIMING_TRACE") != nullptr;
  Clock::time_point start = Clock::now(), window_start = start;
  double window_cpu = cpu_seconds();
  int window_forwards = 0;
  std::vector<Window> windows;

  void forward_done(int batch) {
    if (!on) return;
    ++window_forwards;
    const double wall = seconds_since(window_start);
    if (wall < 0.5) return;
    const double cpu = cpu_seconds();
    windows.push_back({batch * window_forwards / wall, (cpu - window_cpu) / wall});
    window_start = Clock::now(), window_cpu = cpu, window_forwards = 0;
  }
  ~RateTrace() {
    for (std::size_t i = 0; i < windows.size(); ++i) {
      fmt::print(stderr, "window {} (to {:.1f} s): {:.2f} /s, {:.2f} cores busy\n", i, 0.5 * double(i + 1),
                 windows[i].rate, windows[i].cores);
    }
  }
};

double median_rate(int batch, double budget, const std::function<void()>& forward) {
  RateTrace trace;
  const auto warmup = Clock::now();
  do {
    forward();
    trace.forward_done(batch);
  } while (seconds_since(warmup) < kWarmupSeconds);
  std::vector<double> rates;
  const auto start = Clock::now();
  while (rates.size() < 3 || seconds_since(start) < budget) {
    const auto t0 = Clock::now();
    forward();
    rates.push_back(batch / seconds_since(t0));
    trace.forward_done(batch);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

double deit(const std::string& name, int batch, bool pruned, double budget, rs::DenseMath math) {
  const rs::ViTConfig cfg = name == "deit_b" ? rs::ViTConfig::deit_base() : rs::ViTConfig::deit_small();
  rs::VisionTransformer<> model(rs::ViTWeights::random(cfg, 0));
  std::vector<float> images(std::size_t(batch) * 3 * 224 * 224), logits(std::size_t(batch) * 1000);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& p : images) p = normal(gen);
  const auto schedule = pruned ? rs::PruneSchedule::paper() : rs::PruneSchedule::none();
  return median_rate(batch, budget,
                     [&] { model.forward(rs::Host{0, math}, images.data(), batch, logits.data(), schedule); });
}

double minilm(int batch, bool pruned, double budget, int seq, const char* weights) {
  const rs::BertConfig cfg = rs::BertConfig::minilm_l6();
  rs::BertEncoder<> model(rs::BertWeights::load(cfg, rs::io::SafeTensorsFile(weights)));
  std::vector<int> ids(std::size_t(batch) * seq), lengths(std::size_t(batch), seq);
  std::mt19937 gen(1);
  std::uniform_int_distribution<int> token(1000, cfg.vocab_size - 1);
  for (auto& id : ids) id = token(gen);
  for (int b = 0; b < batch; ++b) ids[std::size_t(b) * seq] = 101;  // [CLS]
  std::vector<float> pooled(std::size_t(batch) * cfg.dim);
  const auto schedule = pruned ? rs::PruneSchedule::drop({{1, 0.3}, {3, 0.3}}) : rs::PruneSchedule::none();
  return median_rate(batch, budget, [&] {
    model.forward(rs::Host{}, ids.data(), lengths.data(), batch, seq, pooled.data(), schedule);
  });
}

double resnet50(int batch, bool pruned, double budget) {
  rs::ResNet<> model(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0));
  std::vector<float> images(std::size_t(batch) * 3 * 224 * 224), logits(std::size_t(batch) * 1000);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& p : images) p = normal(gen);
  const auto schedule = pruned ? rs::LinePruneSchedule::paper() : rs::LinePruneSchedule::none();
  return median_rate(batch, budget, [&] { model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule); });
}

template <class Model>
double umt_rate(int batch, int frames, const rs::PruneSchedule& schedule, double budget,
                rs::DenseMath math = rs::DenseMath::F32) {
  const rs::ViTConfig cfg = rs::ViTConfig::umt_base(frames);
  Model model(rs::ViTWeights::random(cfg, 0));
  std::vector<float> clips(std::size_t(batch) * 3 * frames * 224 * 224), logits(std::size_t(batch) * cfg.num_classes);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& p : clips) p = normal(gen);
  return median_rate(batch, budget,
                     [&] { model.forward(rs::Host{0, math}, clips.data(), batch, logits.data(), schedule); });
}

double umt_b(int batch, const std::string& variant, double budget, int frames) {
  namespace P = rs::policies;
  using ShiftModel = rs::VideoTransformer<>;
  using MapModel = rs::VideoTransformer<P::Attention, P::AttentionReceived>;
  if (variant == "flash") return umt_rate<ShiftModel>(batch, frames, rs::PruneSchedule::none(0), budget);
  if (variant == "pruned") return umt_rate<ShiftModel>(batch, frames, rs::PruneSchedule::video_retrieval(), budget);
  if (variant == "map") return umt_rate<MapModel>(batch, frames, rs::PruneSchedule::none(0), budget);
  if (variant == "attn_pruned") return umt_rate<MapModel>(batch, frames, rs::PruneSchedule::video_retrieval(), budget);
  constexpr auto bf16 = rs::DenseMath::Bf16;
  if (variant == "flash_bf16") return umt_rate<ShiftModel>(batch, frames, rs::PruneSchedule::none(0), budget, bf16);
  if (variant == "pruned_bf16") {
    return umt_rate<ShiftModel>(batch, frames, rs::PruneSchedule::video_retrieval(), budget, bf16);
  }
  throw rs::InvalidArgument(fmt::format(
      "model_timing: umt_b variant '{}' is not flash, map, pruned, attn_pruned, flash_bf16 or pruned_bf16", variant));
}

double attention_rss_mib(int tokens, bool map) {
  const int heads = 12, head_dim = 64, dim = heads * head_dim;
  std::vector<float> qkv(std::size_t(tokens) * 3 * dim), out(std::size_t(tokens) * dim);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& v : qkv) v = normal(gen);
  auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), 1, tokens, heads, head_dim);
  if (map) {
    std::vector<float> probs(std::size_t(heads) * tokens * tokens);
    rs::Backend<rs::Host>::attention_with_map(rs::Host{}, p, probs.data());
  } else {
    rs::Backend<rs::Host>::flash_attention(rs::Host{}, p);
  }
  // VmHWM, not getrusage's ru_maxrss: the latter keeps the high-water mark
  // of the process this one was forked from (the Python driver holding
  // PyTorch), while exec starts a new address space and a new VmHWM.
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  throw rs::InvalidArgument("model_timing: no VmHWM in /proc/self/status");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "";
  if (!((argc == 5 && (name == "deit_s" || name == "deit_b" || name == "resnet50")) ||
        (argc == 7 && name == "minilm") || (argc == 6 && name == "umt_b") || (argc == 4 && name == "attention_rss") ||
        (argc == 2 && name == "sgemm"))) {
    fmt::print(stderr,
               "usage: {0} deit_s|deit_b|resnet50 BATCH pruned|unpruned SECONDS (deit: also pruned_bf16|unpruned_bf16)\n"
               "       {0} minilm BATCH pruned|unpruned SECONDS SEQ_LEN MODEL.safetensors\n"
               "       {0} umt_b BATCH flash|map|pruned|attn_pruned|flash_bf16|pruned_bf16 SECONDS FRAMES\n"
               "       {0} attention_rss TOKENS flash|map\n"
               "       {0} sgemm   (whose sgemm the map attention and NCHW convolution call here)\n",
               argv[0]);
    return 2;
  }
  try {
    if (name == "sgemm") {
      const char* core = rs::cpu::blas_core();
      fmt::print("{} (OpenBLAS core {})\n", rs::cpu::name(rs::cpu::sgemm_library()), *core ? core : "unknown");
      return 0;
    }
    if (name == "attention_rss") {
      fmt::print("{:.1f}\n", attention_rss_mib(std::atoi(argv[2]), std::string(argv[3]) == "map"));
      return 0;
    }
    const int batch = std::atoi(argv[2]);
    const std::string mode = argv[3];
    const bool pruned = mode == "pruned" || mode == "pruned_bf16";
    const auto math = mode.size() > 5 && mode.substr(mode.size() - 5) == "_bf16" ? rs::DenseMath::Bf16 : rs::DenseMath::F32;
    const double budget = std::atof(argv[4]);
    const double rate = name == "umt_b"      ? umt_b(batch, argv[3], budget, std::atoi(argv[5]))
                        : name == "minilm"   ? minilm(batch, pruned, budget, std::atoi(argv[5]), argv[6])
                        : name == "resnet50" ? resnet50(batch, pruned, budget)
                                             : deit(name, batch, pruned, budget, math);
    fmt::print("{:.4f}\n", rate);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "model_timing: {}\n", e.what());
    return 1;
  }
}
