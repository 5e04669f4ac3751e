// CPU attention, GFLOP/s (4 N^2 d per head: QK^T and PV):
// - at video lengths: one UMT-B attention (12 heads x 64, batch 1) from
//   1205 to 16384 tokens, flash vs the plain path that writes the N x N
//   map, so "stays fast" reads as a flat line (1882, 1506 and 1205 are
//   what UMT-B at T = 12 attends over under video_retrieval()). The map
//   path stops at 8192 tokens (its map alone is 12 x 8192^2 floats =
//   3 GiB); model_timing attention_rss measures both up to 16k.
//   bench/peer/kernels_vs_pytorch.py runs BM_FlashAttention against
//   PyTorch's SDPA.
// - at DeiT-S's shapes (6 heads x 64, batch 1 and 8): the token counts of
//   the paper's schedule, 197 / 158 / 127 / 102.
// - *Bf16: the same under DenseMath::Bf16, whose products run on AMX tiles
//   in bfloat16 where the CPU has AMX (cpu/flash_attention_amx.hpp);
//   skipped elsewhere.
// - BM_MergeTokens: Compress = Merge's token merge (cpu/merge_tokens.hpp)
//   at UMT-B's first paper layer (2352 -> 1882 tokens, 768 channels) and
//   DeiT-S's (197 -> 158, 384), GFLOP/s of its matching product
//   (2 r |B| key_channels per sample); kernels_vs_pytorch.py --merge runs
//   it against the same merge in PyTorch (ToMe's algorithm).
// Run with
//   --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <repshift/repshift.hpp>

namespace rs = repshift;

namespace {

constexpr int kHeads = 12, kDeitHeads = 6, kHeadDim = 64;

struct Inputs {
  std::vector<float> qkv, out;
  Inputs(int batch, int tokens, int heads)
      : qkv(std::size_t(batch) * tokens * 3 * heads * kHeadDim), out(std::size_t(batch) * tokens * heads * kHeadDim) {
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (auto& v : qkv) v = normal(gen);
  }
};

void report(benchmark::State& state, int batch, int tokens, int heads) {
  const double flops = 4.0 * batch * double(tokens) * tokens * kHeadDim * heads;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["tokens"] = tokens;
}

void time_flash(benchmark::State& state, int batch, int tokens, int heads,
                rs::DenseMath math = rs::DenseMath::F32) {
  if (math == rs::DenseMath::Bf16 && !rs::cpu::amx_bf16_usable()) {
    state.SkipWithError("this CPU runs no AMX bf16 tiles");
    return;
  }
  Inputs in(batch, tokens, heads);
  auto p = rs::AttentionParams::contiguous(in.qkv.data(), nullptr, in.out.data(), batch, tokens, heads, kHeadDim);
  for (auto _ : state) {
    rs::Backend<rs::Host>::flash_attention(rs::Host{0, math}, p);
    benchmark::DoNotOptimize(in.out.data());
  }
  report(state, batch, tokens, heads);
}

void BM_FlashAttention(benchmark::State& state) { time_flash(state, 1, int(state.range(0)), kHeads); }
void BM_FlashAttentionBf16(benchmark::State& state) {
  time_flash(state, 1, int(state.range(0)), kHeads, rs::DenseMath::Bf16);
}

// args: batch, tokens
void BM_FlashAttentionDeiT(benchmark::State& state) {
  time_flash(state, int(state.range(0)), int(state.range(1)), kDeitHeads);
}
void BM_FlashAttentionDeiTBf16(benchmark::State& state) {
  time_flash(state, int(state.range(0)), int(state.range(1)), kDeitHeads, rs::DenseMath::Bf16);
}

void BM_MapAttention(benchmark::State& state) {
  const int tokens = int(state.range(0));
  Inputs in(1, tokens, kHeads);
  std::vector<float> map(std::size_t(kHeads) * tokens * tokens);
  auto p = rs::AttentionParams::contiguous(in.qkv.data(), nullptr, in.out.data(), 1, tokens, kHeads, kHeadDim);
  for (auto _ : state) {
    rs::Backend<rs::Host>::attention_with_map(rs::Host{}, p, map.data());
    benchmark::DoNotOptimize(in.out.data());
  }
  report(state, 1, tokens, kHeads);
}

// args: batch, tokens, keep, channels (keys = rows = channels wide, as a
// Block merges its output rows by its K rows); CLS protected.
void BM_MergeTokens(benchmark::State& state) {
  const int batch = int(state.range(0)), tokens = int(state.range(1)), keep = int(state.range(2));
  const int channels = int(state.range(3));
  std::mt19937 gen(2);
  std::normal_distribution<float> normal;
  auto random = [&](std::size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(gen);
    return v;
  };
  const auto x = random(std::size_t(batch) * tokens * channels), keys = random(x.size());
  const auto scores = random(std::size_t(batch) * tokens);
  std::vector<float> out(std::size_t(batch) * keep * channels), sizes(std::size_t(batch) * keep);
  std::vector<int> keep_idx(sizes.size());
  rs::MergeParams p;
  p.x = x.data(), p.keys = keys.data(), p.scores = scores.data();
  p.out = out.data(), p.out_sizes = sizes.data(), p.keep_idx = keep_idx.data();
  p.batch = batch, p.tokens = tokens, p.keep = keep, p.channels = p.key_channels = channels, p.protect = 1;
  for (auto _ : state) {
    rs::cpu::merge_tokens(rs::Host{}, p);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * batch * double(tokens - keep) * ((tokens - 1) / 2) * channels;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_MergeTokens)->Args({1, 2352, 1882, 768})->Args({2, 2352, 1882, 768})->Args({8, 197, 158, 384})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FlashAttention)
    ->Arg(1205)->Arg(1506)->Arg(1568)->Arg(1882)->Arg(2352)->Arg(3136)->Arg(4096)->Arg(8192)->Arg(16384)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MapAttention)->Arg(1568)->Arg(2352)->Arg(3136)->Arg(4096)->Arg(8192)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FlashAttentionDeiT)->ArgsProduct({{1, 8}, {197, 158, 127, 102}})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_FlashAttentionBf16)->Arg(1205)->Arg(2352)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FlashAttentionDeiTBf16)->ArgsProduct({{1, 8}, {197, 102}})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_MAIN();
