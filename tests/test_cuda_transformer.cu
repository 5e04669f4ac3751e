// The CUDA transformer path against the CPU path (itself tested against the
// naive double reference): cuBLASLt linear, flash attention and the map
// path, the Block for every site / importance / compress / norm, the
// DeiT-shaped model, the video encoder and the BERT sentence encoder, in
// f32 (tight) and f16 / bf16 (storage rounding).
// Argument checks that fire before any device work run everywhere; the
// other tests run their CPU side everywhere, then skip without a GPU.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <repshift/cuda.hpp>
#include <repshift/cuda/models.cuh>

#include "bert_fixture.hpp"
#include "cuda_test_support.cuh"
#include "model_fixtures.hpp"
#include "reference.hpp"
#include "test_support.hpp"
#include "transformer_fixture.hpp"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

// Relative tolerance of a storage type after a few roundings.
template <class T>
constexpr double tolerance() {
  if constexpr (std::is_same_v<T, float>) return 2e-5;
  if constexpr (std::is_same_v<T, __half>) return 1e-2;
  return 6e-2;  // bf16: 8 mantissa bits
}

template <class T>
class CudaTyped : public ::testing::Test {};
TYPED_TEST_SUITE(CudaTyped, DeviceStorageTypes, StorageTypeNames);

}  // namespace

// ---- argument checks (no device needed) ------------------------------------

TEST(CudaAttentionErrors, RefusedBeforeAnyLaunch) {
  float dummy = 0;
  auto p = rs::BasicAttentionParams<float>::contiguous(&dummy, nullptr, &dummy, 1, 4, 2, 256);
  expect_refused([&] { rs::cuda::flash_attention(rs::Cuda{}, p); }, {"cuda::flash_attention", "head_dim = 256"});
  p = rs::BasicAttentionParams<float>::contiguous(nullptr, nullptr, &dummy, 1, 4, 2, 64);
  expect_refused([&] { rs::cuda::flash_attention(rs::Cuda{}, p); }, {"qkv"});
  p = rs::BasicAttentionParams<float>::contiguous(&dummy, nullptr, &dummy, 70000, 4, 2, 64);
  expect_refused([&] { rs::cuda::flash_attention(rs::Cuda{}, p); }, {"batch", "65535"});
  p = rs::BasicAttentionParams<float>::contiguous(&dummy, nullptr, &dummy, 1, 4, 2, 64);
  expect_refused([&] { rs::cuda::attention_with_map(rs::Cuda{}, p, nullptr); }, {"map"});
  p.qkv_bias = &dummy;
  expect_refused([&] { rs::cuda::flash_attention(rs::Cuda{}, p); }, {"qkv_bias", "QKV GEMM"});
  p.qkv_bias = nullptr;
  const int lengths[1] = {3};
  p.key_lengths = lengths;
  expect_refused([&] { rs::cuda::flash_attention(rs::Cuda{}, p); }, {"key_lengths", "CPU-only"});
}

// ---- cuBLASLt linear ---------------------------------------------------------

TYPED_TEST(CudaTyped, LinearMatchesNaiveProduct) {
  using T = TypeParam;
  struct Case {
    rs::cuda::LinearShape shape;
    std::vector<float> x, w, bias, want;
  };
  std::vector<Case> cases;
  for (auto [rows, in, out, ldx] : std::vector<std::array<int, 4>>{{197, 384, 1152, 384}, {5, 40, 7, 40}, {64, 96, 32, 288}}) {
    Case c{{rows, in, out, ldx, out},
           rounded<T>(ref::random_floats(std::size_t(rows) * ldx, 1)),
           rounded<T>(ref::random_floats(std::size_t(out) * in, 2)),
           rounded<T>(ref::random_floats(std::size_t(out), 3)),
           std::vector<float>(std::size_t(rows) * out)};
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) {
        double s = c.bias[std::size_t(o)];
        for (int i = 0; i < in; ++i) s += double(c.x[std::size_t(r) * ldx + i]) * c.w[std::size_t(o) * in + i];
        c.want[std::size_t(r) * out + o] = float(s);
      }
    cases.push_back(std::move(c));
  }

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  for (const Case& c : cases) {
    auto dx = to_device<T>(c.x), dw = to_device<T>(c.w), db = to_device<T>(c.bias);
    rs::cuda::DeviceBuffer<T> dy(c.want.size());
    blas.linear(rs::Cuda{}, c.shape, dx.data(), dw.data(), db.data(), dy.data());
    expect_close(dy.download(c.want.size()), c.want, tolerance<T>() * 0.5, "linear " + std::to_string(c.shape.rows));
    // A bias one element off its buffer's start (under 16-byte aligned) is
    // added after the product, not through cuBLASLt's epilogue: rounded twice.
    std::vector<float> shifted{0.0f};
    shifted.insert(shifted.end(), c.bias.begin(), c.bias.end());
    auto dshifted = to_device<T>(shifted);
    rs::cuda::DeviceBuffer<T> dz(c.want.size());
    blas.linear(rs::Cuda{}, c.shape, dx.data(), dw.data(), dshifted.data() + 1, dz.data());
    expect_close(dz.download(c.want.size()), c.want, tolerance<T>(), "unaligned bias " + std::to_string(c.shape.rows));
  }
  // A caller's workspace must be 256-byte aligned, as cudaMalloc's is.
  rs::cuda::DeviceBuffer<char> arena(1 << 20);
  expect_refused([&] { rs::cuda::Blas misaligned(arena.data() + 64, (1 << 20) - 64); },
                 {"cuda::Blas", "workspace is 64-byte aligned"});
}

// ---- attention ---------------------------------------------------------------

TYPED_TEST(CudaTyped, FlashAttentionMatchesHostFlashAttention) {
  using T = TypeParam;
  const int batch = 2, heads = 3;
  struct Case {
    int head_dim, tokens;
    bool bias;
    std::vector<float> qkv, key_bias, want;
  };
  // head_dim 20: 16-bit rows not whole 16-byte vectors, so the tensor-core
  // kernel loads element-wise; the others take cp.async. 300 tokens: five
  // key blocks through the two stages.
  std::vector<Case> cases;
  for (int head_dim : {16, 20, 32, 40, 64, 128}) {
    for (int tokens : {1, 17, 64, 197, 300}) {
      for (bool bias : {false, true}) {
        const int dim = heads * head_dim;
        Case c{head_dim, tokens, bias, rounded<T>(ref::random_floats(std::size_t(batch) * tokens * 3 * dim, 7 + tokens)),
               ref::random_floats(std::size_t(batch) * tokens, 9), std::vector<float>(std::size_t(batch) * tokens * dim)};
        for (auto& b : c.key_bias) b = std::log(1.0f + std::abs(b) * 3.0f);
        auto hp = rs::AttentionParams::contiguous(c.qkv.data(), nullptr, c.want.data(), batch, tokens, heads, head_dim);
        if (bias) hp.key_bias = c.key_bias.data();
        rs::cpu::flash_attention(rs::Host{}, hp);
        cases.push_back(std::move(c));
      }
    }
  }

  REQUIRE_DEVICE();
  for (const Case& c : cases) {
    auto dqkv = to_device<T>(c.qkv);
    auto dbias = to_device<float>(c.key_bias);
    rs::cuda::DeviceBuffer<T> dout(c.want.size());
    auto p = rs::BasicAttentionParams<T>::contiguous(dqkv.data(), nullptr, dout.data(), batch, c.tokens, heads,
                                                     c.head_dim);
    if (c.bias) p.key_bias = dbias.data();
    rs::cuda::flash_attention(rs::Cuda{}, p);
    expect_close(dout.download(c.want.size()), c.want, tolerance<T>(),
                 "head_dim " + std::to_string(c.head_dim) + " tokens " + std::to_string(c.tokens));
  }
}

// cudaDeviceReset drops every raised shared-memory limit: the f32 kernel
// at head_dim 128 (149 KiB, past the default 48) must raise it again on its
// next launch, which a limit remembered per process would skip. Tests run
// after it in the same process (bench/gpu_run.sh) start on a fresh context:
// neither the library nor these tests keep device state across tests.
TEST(CudaSharedMemory, LimitIsRaisedAgainAfterDeviceReset) {
  const int batch = 1, heads = 2, head_dim = 128, tokens = 70, dim = heads * head_dim;
  const auto qkv = ref::random_floats(std::size_t(batch) * tokens * 3 * dim, 51);
  std::vector<float> want(std::size_t(batch) * tokens * dim);
  rs::cpu::flash_attention(rs::Host{},
                           rs::AttentionParams::contiguous(qkv.data(), nullptr, want.data(), batch, tokens, heads, head_dim));

  REQUIRE_DEVICE();
  for (int round = 0; round < 2; ++round) {
    {  // the buffers die before the reset
      auto dqkv = to_device<float>(qkv);
      rs::cuda::DeviceBuffer<float> dout(want.size());
      rs::cuda::flash_attention(rs::Cuda{}, rs::BasicAttentionParams<float>::contiguous(dqkv.data(), nullptr, dout.data(),
                                                                                        batch, tokens, heads, head_dim));
      expect_close(dout.download(want.size()), want, tolerance<float>(), "round " + std::to_string(round));
    }
    if (round == 0) ASSERT_EQ(cudaDeviceReset(), cudaSuccess);
  }
}

// Packed (varlen) attention, flash and map: each sample's queries see only
// its own keys, as on the CPU path; lengths not multiples of any tile.
TYPED_TEST(CudaTyped, PackedAttentionMatchesHost) {
  using T = TypeParam;
  const std::vector<int> lengths = {23, 5, 130, 1, 64};
  const int batch = int(lengths.size()), heads = 2, head_dim = 64, dim = heads * head_dim;
  const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
  const int total = cu.back(), longest = rs::max_seqlen(cu.data(), batch);
  const auto qkv = rounded<T>(ref::random_floats(std::size_t(total) * 3 * dim, 31));
  const auto key_bias = ref::random_floats(std::size_t(total), 32, -1.0f, 1.0f);
  // [0]: flash, [1]: the map path (its map too).
  std::vector<float> want[2], want_map(std::size_t(batch) * heads * longest * longest);
  for (bool map : {false, true}) {
    want[map].resize(std::size_t(total) * dim);
    auto hp = rs::AttentionParams::contiguous(qkv.data(), nullptr, want[map].data(), batch, longest, heads, head_dim);
    hp.cu_seqlens = cu.data();
    hp.key_bias = key_bias.data();
    if (map) {
      rs::cpu::attention_with_map(rs::Host{}, hp, want_map.data());
    } else {
      rs::cpu::flash_attention(rs::Host{}, hp);
    }
  }

  REQUIRE_DEVICE();
  auto dqkv = to_device<T>(qkv);
  auto dbias = to_device<float>(key_bias);
  auto dcu = device_copy(cu);
  for (bool map : {false, true}) {
    rs::cuda::DeviceBuffer<T> dout(want[map].size());
    rs::cuda::DeviceBuffer<float> dmap(want_map.size());
    auto p = rs::BasicAttentionParams<T>::contiguous(dqkv.data(), nullptr, dout.data(), batch, longest, heads, head_dim);
    p.cu_seqlens = dcu.data();
    p.key_bias = dbias.data();
    if (map) {
      rs::cuda::attention_with_map(rs::Cuda{}, p, dmap.data());
      expect_close(dmap.download(want_map.size()), want_map, tolerance<T>(), "packed map");
    } else {
      rs::cuda::flash_attention(rs::Cuda{}, p);
    }
    expect_close(dout.download(want[map].size()), want[map], tolerance<T>(),
                 map ? "packed map output" : "packed flash output");
  }
}

// cu_seqlens lives on the device, so a sample longer than `tokens`, a
// decreasing offset (a negative length, which would overlap the sample
// before) and a first offset past 0 are found by the kernels: the sample
// is cut to `tokens` or runs nothing (the map stays inside its
// [B, H, tokens, tokens]), and each is reported through exec.status.
TYPED_TEST(CudaTyped, PackedAttentionReportsLayoutsTheHostCannotSee) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  struct Case {
    std::vector<int> cu;
    const char *named, *also_named;
  };
  const int tokens = 64, heads = 2, head_dim = 32, dim = heads * head_dim;
  for (const Case& c : {Case{{0, 23, 123}, "sample 1 has 100 tokens", "tokens = 64"},
                        Case{{0, 40, 20, 60}, "sample 1 has -20 tokens", "outside [0, tokens = 64]"},
                        Case{{5, 30, 60}, "cu_seqlens[0] = 5 must be 0", "packed layout"},
                        // Sample 0 too long (code 6) puts sample 1's rows past batch x tokens = 128
                        // (code 12): whichever is recorded first, sample 1 runs nothing.
                        Case{{0, 100, 150}, "cu_seqlens: sample", "attention"}}) {
    const int batch = int(c.cu.size()) - 1, rows = *std::max_element(c.cu.begin(), c.cu.end());
    auto dqkv = to_device<T>(rounded<T>(ref::random_floats(std::size_t(rows) * 3 * dim, 33)));
    auto dcu = device_copy(c.cu);
    for (bool map : {false, true}) {
      rs::cuda::DeviceBuffer<T> dout(std::size_t(rows) * dim);
      rs::cuda::DeviceBuffer<float> dmap(std::size_t(batch) * heads * tokens * tokens);
      auto status = device_copy(std::vector<int>(4, 0));
      const rs::Cuda exec{nullptr, status.data()};
      auto p = rs::BasicAttentionParams<T>::contiguous(dqkv.data(), nullptr, dout.data(), batch, tokens, heads, head_dim);
      p.cu_seqlens = dcu.data();
      if (map) {
        rs::cuda::attention_with_map(exec, p, dmap.data());
      } else {
        rs::cuda::flash_attention(exec, p);
      }
      expect_refused([&] { rs::cuda::throw_if_status(exec); }, {c.named, c.also_named});
    }
  }
}

// Head dims 32 (four P V thread groups), 40 (three, eight threads idle)
// and 128 (one); 197 keys, not a whole number of warps.
TYPED_TEST(CudaTyped, AttentionWithMapMatchesHostMapPath) {
  using T = TypeParam;
  const int batch = 2, heads = 4, tokens = 197;
  struct Case {
    int head_dim;
    std::vector<float> qkv, want, want_map;
  };
  std::vector<Case> cases;
  for (int head_dim : {32, 40, 128}) {
    const int dim = heads * head_dim;
    Case c{head_dim, rounded<T>(ref::random_floats(std::size_t(batch) * tokens * 3 * dim, 11)),
           std::vector<float>(std::size_t(batch) * tokens * dim),
           std::vector<float>(std::size_t(batch) * heads * tokens * tokens)};
    rs::cpu::attention_with_map(
        rs::Host{}, rs::AttentionParams::contiguous(c.qkv.data(), nullptr, c.want.data(), batch, tokens, heads, head_dim),
        c.want_map.data());
    cases.push_back(std::move(c));
  }

  REQUIRE_DEVICE();
  for (const Case& c : cases) {
    auto dqkv = to_device<T>(c.qkv);
    rs::cuda::DeviceBuffer<T> dout(c.want.size());
    rs::cuda::DeviceBuffer<float> dmap(c.want_map.size());
    rs::cuda::attention_with_map(
        rs::Cuda{}, rs::BasicAttentionParams<T>::contiguous(dqkv.data(), nullptr, dout.data(), batch, tokens, heads,
                                                            c.head_dim),
        dmap.data());
    const std::string what = "head_dim " + std::to_string(c.head_dim);
    expect_close(dmap.download(c.want_map.size()), c.want_map, 1e-5, what + " map");
    expect_close(dout.download(c.want.size()), c.want, tolerance<T>(), what + " output");
  }
}

// ---- the Block ---------------------------------------------------------------

namespace {

template <class Site, class Importance, class Compress, class Norm>
struct BlockCase {
  using site = Site;
  using importance = Importance;
  using compress = Compress;
  using norm = Norm;
};

template <class C>
class CudaBlock : public ::testing::Test {};
using BlockCases = ::testing::Types<
    BlockCase<P::Mlp, P::L2, P::Prune, P::PreNorm>, BlockCase<P::Attention, P::L2, P::Prune, P::PreNorm>,
    BlockCase<P::BlockOutput, P::L1, P::Prune, P::PreNorm>, BlockCase<P::Mlp, P::Cosine, P::Prune, P::PreNorm>,
    BlockCase<P::Mlp, P::TokenNorm, P::Prune, P::PreNorm>, BlockCase<P::Mlp, P::Random, P::Prune, P::PreNorm>,
    BlockCase<P::Attention, P::ClsAttention, P::Prune, P::PreNorm>,
    BlockCase<P::Attention, P::AttentionReceived, P::Prune, P::PreNorm>, BlockCase<P::Mlp, P::L2, P::Fuse, P::PreNorm>,
    BlockCase<P::Attention, P::L2, P::Fuse, P::PreNorm>, BlockCase<P::Mlp, P::L2, P::Prune, P::PostNorm>,
    BlockCase<P::Attention, P::Cosine, P::Prune, P::PostNorm>, BlockCase<P::Mlp, P::L2, P::Merge, P::PreNorm>,
    BlockCase<P::Attention, P::L2, P::Merge, P::PreNorm>, BlockCase<P::BlockOutput, P::Cosine, P::Merge, P::PostNorm>>;
TYPED_TEST_SUITE(CudaBlock, BlockCases);

}  // namespace

// f32: the same kept indices as the CPU block and outputs / scores within
// float noise, pruned and unpruned.
TYPED_TEST(CudaBlock, MatchesHostBlockInF32) {
  using C = TypeParam;
  using B = rs::Block<P::Transformer, typename C::site, typename C::importance, typename C::compress, typename C::norm>;
  constexpr bool kMerge = std::is_same_v<typename C::compress, P::Merge>;
  const int dim = 96, heads = 3, hidden = 384, batch = 3, tokens = 50;
  const RandomBlockWeights rw(dim, heads, hidden, 5);
  const auto hw = rw.view();
  const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 6);
  // Merge tracks token sizes: feed sizes in [1, 4) and compare the kept ones.
  const auto sizes = ref::random_floats(std::size_t(batch) * tokens, 12, 1.0f, 4.0f);

  // What the CPU block gives: dense at three keep counts, then packed.
  struct Want {
    int keep = 0;
    std::vector<float> y, scores, kept_sizes;
    std::vector<int> keep_idx, out_cu;
  };
  auto host_args = [&](Want& w, rs::TransformerBlockArgs& a) {
    a.scores = w.scores.data();
    a.keep_idx = w.keep_idx.data();
    a.seed = 4;
    if constexpr (kMerge) {
      a.sizes = sizes.data();
      if (!w.kept_sizes.empty()) a.kept_sizes = w.kept_sizes.data();
    }
  };
  std::vector<Want> dense;
  for (int keep : {tokens, 37, kMerge ? 26 : 20}) {
    Want w{keep, std::vector<float>(std::size_t(batch) * B::output_tokens(tokens, keep) * dim),
           std::vector<float>(std::size_t(batch) * tokens),
           std::vector<float>(kMerge && keep < tokens ? std::size_t(batch) * keep : 0),
           std::vector<int>(std::size_t(batch) * keep), {}};
    auto ha = rs::TransformerBlockArgs::dense(x.data(), w.y.data(), batch, tokens);
    ha.keep = keep;
    host_args(w, ha);
    rs::Workspace<rs::Host> hws;
    B::forward(rs::Host{}, hw, ha, hws);
    dense.push_back(std::move(w));
  }
  // Packed: samples of 50, 9 and 31 tokens (the rows of x), each keeping
  // its own count; outputs, scores and kept indices as the CPU's packed block.
  const std::vector<int> lengths = {50, 9, 31};
  const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
  const auto kept_cu = rs::kept_cu_seqlens(cu.data(), batch, [](int n) {
    const int k = rs::policies::keep_after_drop(n, 0.4, 1);
    return kMerge ? std::max(k, int(P::Merge::min_keep(n, 1))) : k;
  });
  const int total = cu.back();
  ASSERT_LT(kept_cu.back(), total) << "the packed case drops tokens, so its kept indices are compared";
  Want packed{0, std::vector<float>(static_cast<std::size_t>(total + batch) * dim),
              std::vector<float>(static_cast<std::size_t>(total)),
              std::vector<float>(kMerge ? static_cast<std::size_t>(kept_cu.back()) : 0),
              std::vector<int>(static_cast<std::size_t>(kept_cu.back())),
              std::vector<int>(static_cast<std::size_t>(batch) + 1)};
  {
    rs::TransformerBlockArgs ha;
    ha.x = x.data();
    ha.y = packed.y.data();
    ha.batch = batch;
    ha.cu_seqlens = cu.data();
    ha.kept_cu_seqlens = kept_cu.data();
    ha.out_cu_seqlens = packed.out_cu.data();
    host_args(packed, ha);
    rs::Workspace<rs::Host> hws;
    B::forward(rs::Host{}, hw, ha, hws);
  }

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::Workspace<rs::Cuda, float> dws(blas);
  std::vector<rs::cuda::DeviceBuffer<float>> held;
  auto up = [&](const std::vector<float>& v) { held.push_back(to_device<float>(v)); return held.back().data(); };
  held.reserve(16);
  rs::BasicTransformerBlockWeights<float> dw = hw;
  dw.norm1_weight = up(rw.t.norm1_w), dw.norm1_bias = up(rw.t.norm1_b), dw.qkv_weight = up(rw.t.qkv_w);
  dw.qkv_bias = up(rw.t.qkv_b), dw.proj_weight = up(rw.t.proj_w), dw.proj_bias = up(rw.t.proj_b);
  dw.norm2_weight = up(rw.t.norm2_w), dw.norm2_bias = up(rw.t.norm2_b), dw.fc1_weight = up(rw.t.fc1_w);
  dw.fc1_bias = up(rw.t.fc1_b), dw.fc2_weight = up(rw.t.fc2_w), dw.fc2_bias = up(rw.t.fc2_b);
  auto dx = to_device<float>(x);
  auto dsizes = to_device<float>(sizes);
  B::reserve(dws, dw, batch, tokens);
  // The device buffers of one call, shaped as `w`, and the args that point at them.
  struct Got {
    rs::cuda::DeviceBuffer<float> y, scores, kept_sizes;
    rs::cuda::DeviceBuffer<int> keep_idx;
  };
  auto device_args = [&](const Want& w, Got& g, rs::BasicTransformerBlockArgs<float>& a) {
    g.y.resize(w.y.size()), g.scores.resize(w.scores.size()), g.keep_idx.resize(w.keep_idx.size());
    g.kept_sizes.resize(w.kept_sizes.size());
    a.y = g.y.data();
    a.scores = g.scores.data();
    a.keep_idx = g.keep_idx.data();
    a.seed = 4;
    if constexpr (kMerge) {
      a.sizes = dsizes.data();
      if (!w.kept_sizes.empty()) a.kept_sizes = g.kept_sizes.data();
    }
  };
  auto expect_matches = [&](const Got& g, const Want& w, std::size_t out_rows, const std::string& what) {
    expect_close(g.scores.download(w.scores.size()), w.scores, 2e-5, what + " scores");
    // Kept indices where the block dropped tokens (all of them kept: any order).
    if (w.keep_idx.size() < w.scores.size()) EXPECT_EQ(g.keep_idx.to_host(w.keep_idx.size()), w.keep_idx) << what;
    expect_close(g.y.download(out_rows), std::vector<float>(w.y.begin(), w.y.begin() + std::ptrdiff_t(out_rows)), 5e-5,
                 what + " output");
    if (!w.kept_sizes.empty()) expect_close(g.kept_sizes.download(w.kept_sizes.size()), w.kept_sizes, 1e-6, what + " kept sizes");
  };
  for (const Want& w : dense) {
    Got g;
    auto da = rs::BasicTransformerBlockArgs<float>::dense(dx.data(), nullptr, batch, tokens);
    da.keep = w.keep;
    device_args(w, g, da);
    B::forward(rs::Cuda{}, dw, da, dws);
    rs::cuda_detail::check(cudaDeviceSynchronize(), "sync");
    expect_matches(g, w, w.y.size(), "keep " + std::to_string(w.keep));
  }
  Got g;
  std::vector<int> got_out_cu(packed.out_cu.size());
  rs::BasicTransformerBlockArgs<float> da;
  da.x = dx.data();
  da.batch = batch;
  da.cu_seqlens = cu.data();  // host memory, as on the CPU
  da.kept_cu_seqlens = kept_cu.data();
  da.out_cu_seqlens = got_out_cu.data();
  device_args(packed, g, da);
  B::forward(rs::Cuda{}, dw, da, dws);
  EXPECT_EQ(got_out_cu, packed.out_cu);
  expect_matches(g, packed, std::size_t(packed.out_cu.back()) * dim, "packed");
}

// merge_tokens alone against the CPU merge: same survivors, same means.
TYPED_TEST(CudaTyped, MergeTokensMatchesHostMerge) {
  using T = TypeParam;
  const int batch = 3, channels = 40, key_channels = 24;
  struct Case {
    int tokens, keep, protect;
    std::vector<float> x, keys, scores, sizes, want, want_sizes;
    std::vector<int> want_idx;
  };
  std::vector<Case> cases;
  for (auto [tokens, keep, protect] : std::vector<std::array<int, 3>>{{197, 157, 1}, {197, 99, 1}, {10, 7, 0}, {33, 20, 3}}) {
    Case c{tokens, keep, protect,
           rounded<T>(ref::random_floats(std::size_t(batch) * tokens * channels, 20)),
           rounded<T>(ref::random_floats(std::size_t(batch) * tokens * key_channels, 21)),
           ref::random_floats(std::size_t(batch) * tokens, 22),
           ref::random_floats(std::size_t(batch) * tokens, 23, 1.0f, 4.0f),
           std::vector<float>(std::size_t(batch) * keep * channels), std::vector<float>(std::size_t(batch) * keep),
           std::vector<int>(std::size_t(batch) * keep)};
    for (int i = 0; i < key_channels; ++i) c.keys[std::size_t(protect + 1) * key_channels + i] = 0.0f;  // a zero key
    c.scores[std::size_t(protect + 2)] = NAN;  // merges first
    rs::MergeParams hp;
    hp.x = c.x.data(), hp.keys = c.keys.data(), hp.scores = c.scores.data(), hp.sizes = c.sizes.data();
    hp.out = c.want.data(), hp.out_sizes = c.want_sizes.data(), hp.keep_idx = c.want_idx.data();
    hp.batch = batch, hp.tokens = tokens, hp.keep = keep, hp.channels = channels, hp.key_channels = key_channels;
    hp.protect = protect;
    rs::cpu::merge_tokens(rs::Host{}, hp);
    cases.push_back(std::move(c));
  }

  REQUIRE_DEVICE();
  for (const Case& c : cases) {
    auto dx = to_device<T>(c.x), dkeys = to_device<T>(c.keys);
    auto dscores = to_device<float>(c.scores), dsizes = to_device<float>(c.sizes);
    rs::cuda::DeviceBuffer<T> dout(c.want.size());
    rs::cuda::DeviceBuffer<float> dout_sizes(c.want_sizes.size());
    rs::cuda::DeviceBuffer<int> didx(c.want_idx.size());
    rs::BasicMergeParams<T> p;
    p.x = dx.data(), p.keys = dkeys.data(), p.scores = dscores.data(), p.sizes = dsizes.data();
    p.out = dout.data(), p.out_sizes = dout_sizes.data(), p.keep_idx = didx.data();
    p.batch = batch, p.tokens = c.tokens, p.keep = c.keep, p.channels = channels, p.key_channels = key_channels;
    p.protect = c.protect;
    rs::cuda::merge_tokens(rs::Cuda{}, p);
    // Keys are rounded alike on both sides and matched in f32: same plan.
    ASSERT_EQ(didx.to_host(c.want_idx.size()), c.want_idx) << "tokens " << c.tokens << " keep " << c.keep;
    expect_close(dout.download(c.want.size()), c.want, tolerance<T>(), "merged rows");
    expect_close(dout_sizes.download(c.want_sizes.size()), c.want_sizes, 1e-6, "sizes");
  }
}

// Packed Merge counts live on the device: a sample keeping fewer tokens
// than its set A can remove (the host's check_reachable refuses that for
// a padded batch) is skipped and named; the other sample merges as usual.
TEST(CudaPackedMerge, ReportsAKeepSetACannotReach) {
  REQUIRE_DEVICE();
  const std::vector<int> cu = {0, 6, 9}, kept_cu = {0, 4, 6};  // sample 1: 3 tokens, protect 2, keep 2
  const int batch = 2, channels = 8, sentinel = -7;
  auto dx = device_copy(ref::random_floats(std::size_t(cu.back()) * channels, 24));
  auto dscores = device_copy(ref::random_floats(std::size_t(cu.back()), 25));
  auto dcu = device_copy(cu), dkcu = device_copy(kept_cu);
  rs::cuda::DeviceBuffer<float> dout(std::size_t(kept_cu.back()) * channels);
  auto didx = device_copy(std::vector<int>(std::size_t(kept_cu.back()), sentinel));
  auto status = device_copy(std::vector<int>(4, 0));
  const rs::Cuda exec{nullptr, status.data()};
  rs::MergeParams p;
  p.x = dx.data(), p.keys = dx.data(), p.scores = dscores.data(), p.out = dout.data(), p.keep_idx = didx.data();
  p.batch = batch, p.tokens = 6, p.keep = 4, p.channels = channels, p.key_channels = channels, p.protect = 2;
  p.cu_seqlens = dcu.data(), p.kept_cu_seqlens = dkcu.data();
  rs::cuda::merge_tokens(exec, p);
  expect_refused([&] { rs::cuda::throw_if_status(exec); }, {"sample 1 of 3 tokens keeps 2"});
  const auto idx = didx.to_host();
  EXPECT_EQ(idx[0], 0) << "sample 0 keeps its protected tokens";
  EXPECT_EQ(idx[1], 1);
  EXPECT_EQ(idx[4], sentinel) << "sample 1 wrote nothing";
  EXPECT_EQ(idx[5], sentinel);
}

// f16 / bf16 unpruned (selection could differ where rounding reorders
// near-equal scores): outputs within the storage type's rounding of the
// CPU block run on the rounded weights and input.
TYPED_TEST(CudaTyped, BlockMatchesHostBlockInStorageType) {
  using T = TypeParam;
  using B = rs::Block<P::Transformer, P::Mlp, P::L2>;
  const int dim = 384, heads = 6, hidden = 1536, batch = 2, tokens = 197;
  RandomBlockWeights rw(dim, heads, hidden, 8);
  for (auto* v : {&rw.t.norm1_w, &rw.t.norm1_b, &rw.t.qkv_w, &rw.t.qkv_b, &rw.t.proj_w, &rw.t.proj_b, &rw.t.norm2_w,
                  &rw.t.norm2_b, &rw.t.fc1_w, &rw.t.fc1_b, &rw.t.fc2_w, &rw.t.fc2_b})
    *v = rounded<T>(*v);
  const auto x = rounded<T>(ref::random_floats(std::size_t(batch) * tokens * dim, 9));
  std::vector<float> want(x.size()), want_scores(std::size_t(batch) * tokens);
  rs::Workspace<rs::Host> hws;
  auto ha = rs::TransformerBlockArgs::dense(x.data(), want.data(), batch, tokens);
  ha.scores = want_scores.data();
  B::forward(rs::Host{}, rw.view(), ha, hws);

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::Workspace<rs::Cuda, T> dws(blas);
  std::vector<rs::cuda::DeviceBuffer<T>> held;
  held.reserve(16);
  auto up = [&](const std::vector<float>& v) { held.push_back(to_device<T>(v)); return held.back().data(); };
  rs::BasicTransformerBlockWeights<T> dw;
  dw.dim = dim, dw.heads = heads, dw.mlp_hidden = hidden;
  dw.norm1_weight = up(rw.t.norm1_w), dw.norm1_bias = up(rw.t.norm1_b), dw.qkv_weight = up(rw.t.qkv_w);
  dw.qkv_bias = up(rw.t.qkv_b), dw.proj_weight = up(rw.t.proj_w), dw.proj_bias = up(rw.t.proj_b);
  dw.norm2_weight = up(rw.t.norm2_w), dw.norm2_bias = up(rw.t.norm2_b), dw.fc1_weight = up(rw.t.fc1_w);
  dw.fc1_bias = up(rw.t.fc1_b), dw.fc2_weight = up(rw.t.fc2_w), dw.fc2_bias = up(rw.t.fc2_b);
  B::reserve(dws, dw, batch, tokens);
  auto dx = to_device<T>(x);
  rs::cuda::DeviceBuffer<T> dy(x.size());
  rs::cuda::DeviceBuffer<float> dscores(want_scores.size());
  auto da = rs::BasicTransformerBlockArgs<T>::dense(dx.data(), dy.data(), batch, tokens);
  da.scores = dscores.data();
  B::forward(rs::Cuda{}, dw, da, dws);
  expect_close(dy.download(x.size()), want, 2 * tolerance<T>(), "output");
  expect_close(dscores.download(want_scores.size()), want_scores, 4 * tolerance<T>(), "scores");

  // Pruned with the paper's first rule (158 of 197 kept): the kept set is
  // the top of the device's own scores (rounding may reorder near-ties
  // against the CPU's), and the output rows are the unpruned rows at those
  // indices: 384 16-bit channels take gather's vector path.
  const int keep = rs::policies::keep_after_drop(tokens, 0.2, 1);
  rs::cuda::DeviceBuffer<T> dkept_rows(std::size_t(batch) * keep * dim);
  rs::cuda::DeviceBuffer<int> dkeep(std::size_t(batch) * keep);
  auto dp = rs::BasicTransformerBlockArgs<T>::dense(dx.data(), dkept_rows.data(), batch, tokens);
  dp.keep = keep;
  dp.scores = dscores.data();
  dp.keep_idx = dkeep.data();
  B::forward(rs::Cuda{}, dw, dp, dws);
  const auto device_scores = dscores.download(want_scores.size());
  const auto kept = dkeep.to_host(std::size_t(batch) * keep);
  EXPECT_EQ(kept, ref::select(device_scores, batch, tokens, keep, 1));
  const auto unpruned = dy.download(x.size());
  std::vector<float> want_kept;
  for (int b = 0; b < batch; ++b)
    for (int k = 0; k < keep; ++k) {
      const auto row = unpruned.begin() + (std::ptrdiff_t(b) * tokens + kept[std::size_t(b) * keep + k]) * dim;
      want_kept.insert(want_kept.end(), row, row + dim);
    }
  expect_close(dkept_rows.download(want_kept.size()), want_kept, 1e-6, "pruned output");

  // A workspace reserved for fewer rows is refused, not grown.
  rs::Workspace<rs::Cuda, T> small(blas);
  B::reserve(small, dw, 1, tokens);
  expect_refused([&] { B::forward(rs::Cuda{}, dw, da, small); }, {"workspace", "reserve()"});
}

// ---- the model ---------------------------------------------------------------

using fixtures::lively_vit;
using fixtures::tiny_vit;

// Lively weights (as the CPU model tests use): with timm's tiny init the
// shift scores nearly tie, and float rounding could flip a kept index.
TEST(CudaVisionTransformer, MatchesHostModelPrunedAndUnpruned) {
  const auto cfg = tiny_vit();
  const auto w = lively_vit(cfg, 3);
  const int batch = 4;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 4);
  // tiny_vit has 4 blocks: the paper's layers 0, 3, 6 would be refused.
  const std::vector<rs::PruneSchedule> schedules = {rs::PruneSchedule::none(),
                                                    rs::PruneSchedule::drop({{0, 0.5}, {3, 0.5}})};
  rs::VisionTransformer<> hmodel(w);
  std::vector<std::vector<float>> want;
  for (const auto& schedule : schedules) {
    want.emplace_back(std::size_t(batch) * cfg.num_classes);
    hmodel.forward(rs::Host{}, images.data(), batch, want.back().data(), schedule);
  }

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::cuda::VisionTransformer<float> dmodel(w, blas);
  dmodel.reserve(batch);
  auto dimages = to_device<float>(images);
  rs::cuda::DeviceBuffer<float> dlogits(std::size_t(batch) * cfg.num_classes);
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    dmodel.forward(rs::Cuda{}, dimages.data(), batch, dlogits.data(), schedules[i]);
    expect_close(dlogits.download(want[i].size()), want[i], 1e-4, "logits");
  }
  expect_refused([&] { dmodel.forward(rs::Cuda{}, dimages.data(), batch + 1, dlogits.data()); }, {"reserve"});
}

// A sample's logits and kept tokens are the same alone as in a batch (the
// CPU's batch-invariance tests, on the device): cuBLASLt picks its
// algorithm per row count, which may change a sample's rounding, never
// more than that.
TEST(CudaVisionTransformer, SampleAloneMatchesItsBatch) {
  const auto cfg = tiny_vit();
  const auto w = lively_vit(cfg, 3);
  const int batch = 5;
  const std::size_t image = 3 * 32 * 32;
  const auto images = ref::random_floats(batch * image, 9);
  const auto schedule = rs::PruneSchedule::drop({{0, 0.5}, {3, 0.5}});

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::cuda::VisionTransformer<float> dmodel(w, blas);
  dmodel.reserve(batch);
  dmodel.reserve(1);  // a smaller reserve keeps the room already there
  auto dimages = to_device<float>(images);
  rs::cuda::DeviceBuffer<float> dlogits(std::size_t(batch) * cfg.num_classes);
  rs::ViTTrace together;
  dmodel.forward(rs::Cuda{}, dimages.data(), batch, dlogits.data(), schedule, &together);
  const auto all = dlogits.download(std::size_t(batch) * cfg.num_classes);
  ASSERT_EQ(together.keep_idx.size(), 2u);
  for (int b = 0; b < batch; ++b) {
    rs::ViTTrace alone;
    dmodel.forward(rs::Cuda{}, dimages.data() + b * image, 1, dlogits.data(), schedule, &alone);
    ASSERT_EQ(alone.keep_idx.size(), together.keep_idx.size());
    const auto first = all.begin() + std::ptrdiff_t(b) * cfg.num_classes;
    expect_close(dlogits.download(std::size_t(cfg.num_classes)), std::vector<float>(first, first + cfg.num_classes),
                 1e-5, "logits of image " + std::to_string(b));
    for (std::size_t k = 0; k < alone.keep_idx.size(); ++k) {
      const std::size_t keep = alone.keep_idx[k].size();
      const auto row = together.keep_idx[k].begin() + std::ptrdiff_t(b * keep);
      EXPECT_EQ(alone.keep_idx[k], std::vector<int>(row, row + std::ptrdiff_t(keep))) << "image " << b << ", cut " << k;
    }
  }
}

// float16 rounds 65520 and above to inf: a finite weight that large is
// refused by name when the model uploads it, never stored as inf.
TEST(CudaVisionTransformer, HalfRefusesAWeightItWouldMakeInfinite) {
  auto w = rs::ViTWeights::random(tiny_vit(), 7);
  w.head_b[1] = 7e4f;
  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  expect_refused([&] { rs::cuda::VisionTransformer<__half> dmodel(w, blas); },
                 {"head.bias[1] = 70000 rounds to inf in float16"});
  rs::cuda::VisionTransformer<__nv_bfloat16> wide(w, blas);  // bfloat16 holds it
}

TEST(CudaVisionTransformer, MergeMatchesHostModel) {
  const auto cfg = tiny_vit();
  const auto w = lively_vit(cfg, 5);
  const int batch = 3;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 6);
  const auto schedule = rs::PruneSchedule::drop({{0, 0.2}, {3, 0.2}});  // 17 -> 14 -> 12 tokens, within Merge's reach
  rs::VisionTransformer<P::Mlp, P::L2, P::Merge> hmodel(w);
  std::vector<float> want(std::size_t(batch) * cfg.num_classes);
  hmodel.forward(rs::Host{}, images.data(), batch, want.data(), schedule);

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::cuda::VisionTransformer<float, P::Mlp, P::L2, P::Merge> dmodel(w, blas);
  dmodel.reserve(batch);
  auto dimages = to_device<float>(images);
  rs::cuda::DeviceBuffer<float> dlogits(want.size());
  dmodel.forward(rs::Cuda{}, dimages.data(), batch, dlogits.data(), schedule);
  expect_close(dlogits.download(want.size()), want, 1e-4, "logits");
}

// The video encoder (tubelet patches, no class token, token-mean head)
// under the paper's video schedules, kept indices included.
TEST(CudaVideoTransformer, MatchesHostModelWithTheSameKeptTokens) {
  const auto cfg = fixtures::tiny_video();
  auto w = lively_vit(cfg, 7);
  w.pos_embed = rs::ViTWeights::random(cfg, 7).pos_embed;
  const int batch = 3;
  const auto clips = ref::random_floats(std::size_t(batch) * 3 * 4 * 16 * 16, 8);
  const std::vector<rs::PruneSchedule> schedules = {rs::PruneSchedule::none(0), rs::PruneSchedule::video_retrieval(),
                                                    rs::PruneSchedule::video_qa(3)};
  rs::VideoTransformer<> hmodel(w);
  std::vector<std::vector<float>> want;
  std::vector<rs::ViTTrace> htrace(schedules.size());
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    want.emplace_back(std::size_t(batch) * cfg.num_classes);
    hmodel.forward(rs::Host{}, clips.data(), batch, want.back().data(), schedules[i], &htrace[i]);
    EXPECT_EQ(htrace[i].keep_idx.empty(), i == 0) << "only the first schedule keeps every token";
  }

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::cuda::VideoTransformer<float> dmodel(w, blas);
  dmodel.reserve(batch);
  auto dclips = to_device<float>(clips);
  rs::cuda::DeviceBuffer<float> dlogits(std::size_t(batch) * cfg.num_classes);
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    rs::ViTTrace dtrace;
    dmodel.forward(rs::Cuda{}, dclips.data(), batch, dlogits.data(), schedules[i], &dtrace);
    expect_close(dlogits.download(want[i].size()), want[i], 1e-4, "logits");
    EXPECT_EQ(dtrace.keep_idx, htrace[i].keep_idx);
  }
}

// The text embedding and the token-mean pooling in each storage type
// against the CPU ops on the same (rounded) values: packed and padded ids,
// an empty sample, sizes, normalisation, widths past one CTA's threads.
TYPED_TEST(CudaTyped, EmbedAndPoolMatchTheHostOps) {
  using T = TypeParam;
  // An empty sample among them (the row -> sample search skips it); the
  // pooling, which needs rows, takes the same rows as three samples.
  const int vocab = 11, positions = 40, dim = 300, batch = 4, longest = 33;
  const std::vector<int> lengths = {17, 0, 1, 33};
  const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
  const std::vector<int> pool_cu = {0, 17, 18, 51};
  const int rows = cu.back();
  const auto word = rounded<T>(ref::random_floats(std::size_t(vocab) * dim, 1));
  const auto position = rounded<T>(ref::random_floats(std::size_t(positions) * dim, 2));
  const auto type = rounded<T>(ref::random_floats(std::size_t(dim), 3));
  const auto gamma = rounded<T>(ref::random_floats(std::size_t(dim), 4, 0.5f, 1.5f));
  const auto beta = rounded<T>(ref::random_floats(std::size_t(dim), 5));
  std::vector<int> ids(static_cast<std::size_t>(rows)), padded(std::size_t(batch) * longest, -1);
  for (int i = 0; i < rows; ++i) ids[std::size_t(i)] = (i * 7 + 3) % vocab;
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < lengths[std::size_t(b)]; ++t)
      padded[std::size_t(b) * longest + std::size_t(t)] = ids[std::size_t(cu[std::size_t(b)] + t)];
  // The ops' arguments, on host or device values alike (U: float or T).
  auto embed_params = [&](auto* word_, auto* position_, auto* type_, auto* gamma_, auto* beta_, const int* cu_,
                          auto* out) {
    rs::EmbedParams<std::remove_pointer_t<decltype(out)>> e;
    e.cu_seqlens = cu_;
    e.batch = batch;
    e.rows = rows;
    e.dim = dim;
    e.vocab = vocab;
    e.word = word_;
    e.position = position_;
    e.token_type = type_;
    e.norm = {gamma_, beta_, 1e-12f};
    e.out = out;
    return e;
  };
  auto pool_params = [&](auto* x, const int* cu_, const float* sizes, bool normalize, auto* out) {
    rs::PoolParams<std::remove_pointer_t<decltype(out)>> p;
    p.x = x;
    p.cu_seqlens = cu_;
    p.sizes = sizes;
    p.batch = 3;
    p.channels = dim;
    p.normalize = normalize;
    p.out = out;
    return p;
  };
  std::vector<float> want(std::size_t(rows) * dim);
  auto h = embed_params(word.data(), position.data(), type.data(), gamma.data(), beta.data(), cu.data(), want.data());
  h.ids = ids.data();
  rs::Backend<rs::Host>::embed_tokens(rs::Host{}, h);
  // Pooling the CPU's embedding (rounded to T), weighted by sizes, plain and normalised.
  const auto x = rounded<T>(want);
  const auto sizes = ref::random_floats(std::size_t(rows), 6, 1.0f, 4.0f);
  std::vector<float> want_pooled[2];
  for (const bool normalize : {false, true}) {
    want_pooled[normalize].resize(std::size_t(3) * dim);
    rs::Backend<rs::Host>::pool_tokens(
        rs::Host{}, pool_params(x.data(), pool_cu.data(), sizes.data(), normalize, want_pooled[normalize].data()));
  }

  REQUIRE_DEVICE();
  auto dword = to_device<T>(word), dpos = to_device<T>(position), dtype = to_device<T>(type),
       dgamma = to_device<T>(gamma), dbeta = to_device<T>(beta);
  auto dids = device_copy(ids), dpadded = device_copy(padded);
  auto dcu = device_copy(std::vector<int>(cu.begin(), cu.end())), dpool_cu = device_copy(pool_cu);
  rs::cuda::DeviceBuffer<T> dx(std::size_t(rows) * dim);
  auto d = embed_params(dword.data(), dpos.data(), dtype.data(), dgamma.data(), dbeta.data(), dcu.data(), dx.data());
  for (const bool pad : {false, true}) {
    d.ids = pad ? dpadded.data() : dids.data();
    d.ids_stride = pad ? longest : 0;
    rs::Backend<rs::Cuda>::embed_tokens(rs::Cuda{}, d);
    expect_close(dx.download(want.size()), want, tolerance<T>(), pad ? "embed_tokens, padded ids" : "embed_tokens");
  }

  auto dxr = to_device<T>(x);
  auto dsizes = to_device<float>(sizes);
  for (const bool normalize : {false, true}) {
    const std::vector<float>& pooled = want_pooled[normalize];
    rs::cuda::DeviceBuffer<T> dpooled(pooled.size());
    rs::Backend<rs::Cuda>::pool_tokens(
        rs::Cuda{}, pool_params(dxr.data(), dpool_cu.data(), dsizes.data(), normalize, dpooled.data()));
    expect_close(dpooled.download(pooled.size()), pooled, tolerance<T>(), normalize ? "pool, normalised" : "pool");
  }
}

// The sentence encoder on packed and padded sentences of unequal lengths,
// unpruned and pruned, against the CPU encoder, kept indices included;
// Merge carries its token sizes into the pooled mean.
template <class Compress>
void expect_bert_matches_host(const std::vector<rs::PruneSchedule>& schedules) {
  const auto w = random_bert(41);
  const std::vector<int> lengths = {7, 30, 2, 19};
  const int batch = int(lengths.size()), tokens = 30, dim = w.config.dim;
  const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
  std::vector<int> padded(std::size_t(batch) * tokens, 0), packed(std::size_t(cu.back()));
  std::mt19937 gen(42);
  std::uniform_int_distribution<int> id(1, w.config.vocab_size - 1);
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < lengths[std::size_t(b)]; ++t)
      packed[std::size_t(cu[std::size_t(b)] + t)] = padded[std::size_t(b) * tokens + std::size_t(t)] = id(gen);
  rs::BertEncoder<P::Mlp, P::L2, Compress> hmodel(w);
  std::vector<std::vector<float>> want;
  std::vector<rs::BertTrace> htrace(schedules.size());
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    want.emplace_back(std::size_t(batch) * dim);
    hmodel.forward_packed(rs::Host{}, packed.data(), cu.data(), batch, want.back().data(), schedules[i], true,
                          &htrace[i]);
  }

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::cuda::BertEncoder<float, P::Mlp, P::L2, Compress> dmodel(w, blas);
  dmodel.reserve(batch, tokens);
  auto dpacked = device_copy(packed), dpadded = device_copy(padded);
  rs::cuda::DeviceBuffer<float> dpooled(std::size_t(batch) * dim);
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    rs::BertTrace dtrace;
    dmodel.forward_packed(rs::Cuda{}, dpacked.data(), cu.data(), batch, dpooled.data(), schedules[i], true, &dtrace);
    expect_close(dpooled.download(want[i].size()), want[i], 1e-4, "packed");
    EXPECT_EQ(dtrace.keep_idx, htrace[i].keep_idx);
    EXPECT_EQ(dtrace.cu_seqlens, htrace[i].cu_seqlens);
    dmodel.forward(rs::Cuda{}, dpadded.data(), lengths.data(), batch, tokens, dpooled.data(), schedules[i]);
    expect_close(dpooled.download(want[i].size()), want[i], 1e-4, "padded");
  }
  auto more = cu;  // a fifth sentence: past what was reserved, refused before any launch
  more.push_back(more.back() + 3);
  expect_refused([&] { dmodel.forward_packed(rs::Cuda{}, dpacked.data(), more.data(), batch + 1, dpooled.data()); },
                 {"reserve(batch, tokens)"});
}

TEST(CudaBertEncoder, MatchesHostEncoderPackedAndPadded) {
  expect_bert_matches_host<P::Prune>({rs::PruneSchedule::none(), rs::PruneSchedule::drop({{0, 0.3}, {1, 0.25}})});
}

TEST(CudaBertEncoder, MergeMatchesHostEncoder) {
  expect_bert_matches_host<P::Merge>({rs::PruneSchedule::drop({{0, 0.3}, {2, 0.2}})});
}

// An id outside the vocabulary cannot be checked on the host: its row is
// zeroed and the id reaches exec.status.
TEST(CudaBertEncoder, BadIdIsReportedThroughStatus) {
  REQUIRE_DEVICE();
  const auto w = random_bert(43);
  rs::cuda::Blas blas;
  rs::cuda::BertEncoder<float> dmodel(w, blas);
  dmodel.reserve(2, 4);
  auto dids = device_copy(std::vector<int>{1, 2, 3, 4, 5, -3});
  const int cu[3] = {0, 4, 6};
  auto status = device_copy(std::vector<int>(4, 0));
  rs::cuda::DeviceBuffer<float> dpooled(std::size_t(2) * w.config.dim);
  const rs::Cuda exec{nullptr, status.data()};
  dmodel.forward_packed(exec, dids.data(), cu, 2, dpooled.data());
  expect_refused([&] { rs::cuda::throw_if_status(exec); }, {"ids[5] = -3"});
}

// The digits ViT trained in PyTorch (data/digits_vit): f16 and bf16 keep
// the predictions of the f32 CPU model on nearly every held-out image.
TYPED_TEST(CudaTyped, DigitsViTKeepsThePredictions) {
  using T = TypeParam;
  // The checkout's path as built, unless the binary runs from a copy
  // elsewhere (bench/gpu_kit.sh: built here, run on a GPU machine).
  const char* moved = std::getenv("REPSHIFT_SOURCE_DIR");
  const std::string dir = std::string(moved ? moved : REPSHIFT_SOURCE_DIR) + "/data/digits_vit/";
  const auto cfg = rs::ViTConfig::digits();
  const auto weights = rs::ViTWeights::load(cfg, rs::io::SafeTensorsFile(dir + "model.safetensors"));
  const rs::io::SafeTensorsFile test_set(dir + "test_set.safetensors");
  const int batch = int(test_set.info("labels").shape.at(0));
  const auto images = test_set.load_f32("images", {batch, cfg.in_chans, cfg.image_size, cfg.image_size});
  std::vector<float> want(std::size_t(batch) * 10);
  rs::VisionTransformer<> hmodel(weights);
  hmodel.forward(rs::Host{}, images.data(), batch, want.data());

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::cuda::VisionTransformer<T> dmodel(weights, blas);
  dmodel.reserve(batch);
  auto dimages = to_device<T>(images);
  rs::cuda::DeviceBuffer<T> dlogits(want.size());
  dmodel.forward(rs::Cuda{}, dimages.data(), batch, dlogits.data());
  const auto got = dlogits.download(want.size());
  int same = 0;
  for (int b = 0; b < batch; ++b) {
    auto arg = [&](const std::vector<float>& v) {
      return std::max_element(v.begin() + b * 10, v.begin() + b * 10 + 10) - (v.begin() + b * 10);
    };
    same += arg(got) == arg(want);
  }
  if constexpr (std::is_same_v<T, float>) {
    EXPECT_EQ(same, batch);
    expect_close(got, want, 1e-4, "logits");
  } else {
    EXPECT_GE(same, batch - 3) << type_name<T>();
  }
}
