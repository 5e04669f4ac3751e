// The CUDA entry points against the CPU path (itself tested against the
// double reference): scores within float noise, selections and gathers
// bit-identical. Without a device each test runs its CPU side, then skips
// (GTEST_SKIP -> ctest "Skipped").

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <repshift/cuda.hpp>
#include <repshift/cuda/epilogue.cuh>

#include "cuda_test_support.cuh"
#include "reference.hpp"
#include "reference_transformer.hpp"
#include "test_support.hpp"

namespace rs = repshift;

namespace {

// Host twin of a device storage type (same bits).
template <class T> struct HostTwin { using type = float; };
template <> struct HostTwin<__half> { using type = rs::half; };
template <> struct HostTwin<__nv_bfloat16> { using type = rs::bf16; };

template <class T>
std::vector<T> as_device_type(const std::vector<typename HostTwin<T>::type>& v) {
  std::vector<T> out(v.size());
  std::memcpy(static_cast<void*>(out.data()), v.data(), v.size() * sizeof(T));
  return out;
}

template <class M, class T>
struct Combo {
  using Metric = M;
  using Type = T;
};
using Combos = ::testing::Types<
    Combo<rs::policies::L1, float>, Combo<rs::policies::L2, float>, Combo<rs::policies::Cosine, float>,
    Combo<rs::policies::L2, __half>, Combo<rs::policies::Cosine, __half>, Combo<rs::policies::L1, __nv_bfloat16>,
    Combo<rs::policies::L2, __nv_bfloat16>, Combo<rs::policies::Cosine, __nv_bfloat16>>;

template <class C>
class CudaShiftScore : public ::testing::Test {};
TYPED_TEST_SUITE(CudaShiftScore, Combos);

}  // namespace

TYPED_TEST(CudaShiftScore, MatchesHostPath) {
  using M = typename TypeParam::Metric;
  using T = typename TypeParam::Type;
  using H = typename HostTwin<T>::type;
  const int batch = 3;
  struct Case {
    int tokens, channels;
    std::vector<H> before, after;
    std::vector<float> want;
  };
  std::vector<Case> cases;
  std::uint32_t seed = 3;
  for (int tokens : {1, 197, 1025}) {
    for (int channels : {1, 3, 384, 1000}) {
      const std::size_t n = std::size_t(batch) * tokens * channels;
      Case c{tokens, channels, {}, {}, std::vector<float>(std::size_t(batch) * tokens)};
      for (float x : ref::random_floats(n, seed++)) c.before.push_back(H(x));
      for (float x : ref::random_floats(n, seed++)) c.after.push_back(H(x));
      rs::shift_score<M>(rs::Host{}, c.before.data(), c.after.data(), c.want.data(), batch, tokens, channels);
      cases.push_back(std::move(c));
    }
  }

  REQUIRE_DEVICE();
  for (const Case& c : cases) {
    auto d_before = device_copy(as_device_type<T>(c.before)), d_after = device_copy(as_device_type<T>(c.after));
    rs::cuda::DeviceBuffer<float> d_scores(c.want.size());
    rs::shift_score<M>(rs::Cuda{}, d_before.data(), d_after.data(), d_scores.data(), batch, c.tokens, c.channels);
    const auto got = d_scores.to_host();
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], c.want[i], 2e-5 * (1 + std::abs(c.want[i])))
          << "tokens " << c.tokens << " channels " << c.channels;
  }
}

TEST(CudaShiftScore, StridedViewTakesTheScalarPath) {
  const int batch = 2, tokens = 9, channels = 6;  // token stride 7: not vectorisable
  const auto wide = ref::random_floats(std::size_t(batch) * tokens * 7, 1), other = ref::random_floats(wide.size(), 2);
  rs::TensorView<const float, 3> hb{wide.data(), {batch, tokens, channels}, {tokens * 7, 7, 1}};
  rs::TensorView<const float, 3> ha{other.data(), {batch, tokens, channels}, {tokens * 7, 7, 1}};
  std::vector<float> want(batch * tokens);
  rs::shift_score<rs::policies::L2>(rs::Host{}, hb, ha, rs::make_view(want.data(), {batch, tokens}));

  REQUIRE_DEVICE();
  auto db = device_copy(wide), da = device_copy(other);
  rs::cuda::DeviceBuffer<float> ds(want.size());
  rs::TensorView<const float, 3> vb{db.data(), hb.shape, hb.stride}, va{da.data(), ha.shape, ha.stride};
  rs::shift_score<rs::policies::L2>(rs::Cuda{}, vb, va, rs::make_view(ds.data(), {batch, tokens}));
  const auto got = ds.to_host();
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5f);
}

// Up to 4096 tokens one CTA sorts its sample; past that it radix-selects
// (cuda/select_top.cuh): both against the CPU, with ties (3 levels), NaN,
// -0.0 and the protected prefix.
TEST(CudaSelectTop, BitIdenticalToHost) {
  const int batch = 4;
  struct Case {
    int tokens, keep, protect;
    std::vector<float> scores;
    std::vector<int> want;
  };
  std::vector<Case> cases;
  std::mt19937 gen(5);
  auto add = [&](int tokens, int keep, int protect, int levels) {
    std::uniform_int_distribution<int> dist(0, levels - 1);
    Case c{tokens, keep, protect, std::vector<float>(std::size_t(batch) * tokens),
           std::vector<int>(std::size_t(batch) * keep)};
    for (auto& s : c.scores) s = float(dist(gen)) * 0.25f;
    if (tokens > 5) c.scores[3] = std::numeric_limits<float>::quiet_NaN(), c.scores[4] = -0.0f;
    rs::select_top(rs::Host{}, c.scores.data(), c.want.data(), batch, tokens, keep, protect);
    cases.push_back(std::move(c));
  };
  for (int tokens : {1, 2, 197, 256, 257, 1025, 4096, 4097, 9409, 16387}) {
    for (int protect : {0, 1}) {
      for (double ratio : {1.0, 0.7, 0.5, 0.01}) {
        for (int levels : {3, 1 << 20}) add(tokens, rs::policies::keep_count(tokens, ratio, protect), protect, levels);
      }
    }
  }
  // Long samples keeping only their protected prefix, and a wider prefix.
  for (int protect : {1, 3}) add(5000, protect, protect, 3);
  add(4500, 700, 3, 3);

  REQUIRE_DEVICE();
  for (const Case& c : cases) {
    auto ds = device_copy(c.scores);
    rs::cuda::DeviceBuffer<int> di(c.want.size());
    rs::select_top(rs::Cuda{}, ds.data(), di.data(), batch, c.tokens, c.keep, c.protect);
    ASSERT_EQ(di.to_host(), c.want) << "tokens " << c.tokens << " keep " << c.keep << " protect " << c.protect;
  }
}

// Packed (varlen) select and gather: the same indices and rows as the CPU
// path, each sample with its own length and keep count (cu_seqlens on the device).
static void check_packed_select_and_gather(const std::vector<int>& lengths) {
  SCOPED_TRACE(testing::Message() << "first sample of " << lengths[0] << " tokens");
  const int batch = int(lengths.size()), channels = 384;
  const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
  const auto kept_cu = rs::kept_cu_seqlens(cu.data(), batch, [](int n) { return rs::policies::keep_after_drop(n, 0.3, 1); });
  const int max_n = rs::max_seqlen(cu.data(), batch), max_k = rs::max_seqlen(kept_cu.data(), batch);
  const auto scores = ref::random_floats(std::size_t(cu.back()), 21);
  const auto x = ref::random_floats(std::size_t(cu.back()) * channels, 22);
  std::vector<int> want_idx(std::size_t(kept_cu.back()));
  rs::select_top_varlen(rs::Host{}, scores.data(), cu.data(), kept_cu.data(), want_idx.data(), batch, max_n, max_k, 1);
  std::vector<float> want(std::size_t(kept_cu.back()) * channels);
  rs::gather_tokens_varlen(rs::Host{}, x.data(), cu.data(), want_idx.data(), kept_cu.data(), want.data(), batch, max_n,
                           max_k, channels);

  REQUIRE_DEVICE();
  auto dcu = device_copy(cu), dkcu = device_copy(kept_cu);
  auto ds = device_copy(scores), dx = device_copy(x);
  rs::cuda::DeviceBuffer<int> di(want_idx.size());
  rs::select_top_varlen(rs::Cuda{}, ds.data(), dcu.data(), dkcu.data(), di.data(), batch, max_n, max_k, 1);
  ASSERT_EQ(di.to_host(), want_idx);
  rs::cuda::DeviceBuffer<float> dout(want.size());
  rs::gather_tokens_varlen(rs::Cuda{}, dx.data(), dcu.data(), di.data(), dkcu.data(), dout.data(), batch, max_n, max_k,
                           channels);
  EXPECT_EQ(dout.to_host(), want);
}

TEST(CudaPacked, SelectAndGatherBitIdenticalToHost) {
  for (const std::vector<int>& lengths : {std::vector<int>{23, 5, 300, 1, 197}, std::vector<int>{4500, 7, 5001}}) {
    check_packed_select_and_gather(lengths);
  }
}

// Packed counts live on the device, where only the kernel sees them: a
// sample keeping more than it has, or longer than `tokens`, is skipped
// (nothing written past its rows) and named by throw_if_status.
TEST(CudaPacked, SelectReportsCountsTheHostCannotSee) {
  REQUIRE_DEVICE();
  struct Case {
    std::vector<int> cu, kept_cu;
    int tokens, keep;
    const char* named;
  };
  for (const Case& c : {Case{{0, 4, 9}, {0, 3, 10}, 8, 7, "sample 1 has 5 tokens and keeps 7"},
                        Case{{0, 4, 16}, {0, 3, 6}, 8, 7, "sample 1 has 12 tokens and keeps 3"},
                        Case{{2, 4, 9}, {0, 2, 6}, 8, 7, "cu_seqlens[0] = 2 must be 0"},
                        // tokens = 0 on the host still runs the device's check
                        Case{{0, 0, 3}, {0, 0, 0}, 0, 0, "sample 1 has 3 tokens and keeps 0"}}) {
    const int batch = 2;
    auto ds = device_copy(ref::random_floats(std::size_t(c.cu.back()), 23));
    auto dcu = device_copy(c.cu), dkcu = device_copy(c.kept_cu);
    const int sentinel = -7;
    auto di = device_copy(std::vector<int>(std::size_t(c.kept_cu.back()) + 8, sentinel));
    auto status = device_copy(std::vector<int>(4, 0));
    const rs::Cuda exec{nullptr, status.data()};
    rs::select_top_varlen(exec, ds.data(), dcu.data(), dkcu.data(), di.data(), batch, c.tokens, c.keep, 0);
    expect_refused([&] { rs::cuda::throw_if_status(exec); }, {c.named});
    const auto idx = di.to_host();
    for (std::size_t i = std::size_t(c.kept_cu[1]); i < idx.size(); ++i) EXPECT_EQ(idx[i], sentinel) << "slot " << i;
  }
}

// A record a forward left (here: one that a CudaError would have stopped
// before its throw_if_status) is gone after clear_status, and the array
// records again.
TEST(CudaPacked, ClearStatusDropsALeftRecord) {
  REQUIRE_DEVICE();
  auto ds = device_copy(ref::random_floats(9, 24));
  auto dcu = device_copy(std::vector<int>{0, 4, 9}), dkcu = device_copy(std::vector<int>{0, 3, 10});
  rs::cuda::DeviceBuffer<int> di(16);
  auto status = device_copy(std::vector<int>(4, 0));
  const rs::Cuda exec{nullptr, status.data()};
  rs::select_top_varlen(exec, ds.data(), dcu.data(), dkcu.data(), di.data(), 2, 8, 7, 0);
  rs::cuda::clear_status(exec);
  EXPECT_EQ(status.to_host(), std::vector<int>(4, 0));
  EXPECT_NO_THROW(rs::cuda::throw_if_status(exec));
  rs::select_top_varlen(exec, ds.data(), dcu.data(), dkcu.data(), di.data(), 2, 8, 7, 0);
  expect_refused([&] { rs::cuda::throw_if_status(exec); }, {"sample 1 has 5 tokens and keeps 7"});
}

// The same for gather: a sample whose device-side counts break the rules
// (more kept rows than `keep` would lose rows, fewer output rows than kept
// ones would write into the next sample's) writes nothing and is named.
TEST(CudaPacked, GatherReportsCountsTheHostCannotSee) {
  REQUIRE_DEVICE();
  struct Case {
    std::vector<int> cu, kept_cu, out_cu;
    int tokens, keep;
    const char* named;
  };
  const int batch = 2, channels = 8;
  for (const Case& c : {Case{{0, 4, 9}, {0, 3, 10}, {}, 8, 7, "sample 1 has 5 tokens and keeps 7"},
                        Case{{0, 4, 9}, {0, 3, 6}, {0, 3, 5}, 8, 7, "sample 1 2 rows for its 3 kept tokens"},
                        Case{{0, 4, 9}, {0, 3, 6}, {1, 4, 7}, 8, 7, "out_cu_seqlens[0] = 1 must be 0"},
                        // keep = 0 on the host still runs the device's check
                        Case{{0, 0, 5}, {0, 0, 2}, {}, 8, 0, "sample 1 has 5 tokens and keeps 2"}}) {
    auto dx = device_copy(ref::random_floats(std::size_t(c.cu.back()) * channels, 24));
    auto dcu = device_copy(c.cu), dkcu = device_copy(c.kept_cu);
    auto di = device_copy(std::vector<int>(std::size_t(c.kept_cu.back()), 0));
    auto dout_cu = device_copy(c.out_cu.empty() ? c.kept_cu : c.out_cu);
    const float sentinel = -7.0f;
    auto dout = device_copy(std::vector<float>((std::size_t(c.kept_cu.back()) + 4) * channels, sentinel));
    auto status = device_copy(std::vector<int>(4, 0));
    const rs::Cuda exec{nullptr, status.data()};
    rs::gather_tokens_varlen(exec, dx.data(), dcu.data(), di.data(), dkcu.data(), dout.data(), batch, c.tokens, c.keep,
                             channels, c.out_cu.empty() ? nullptr : dout_cu.data());
    expect_refused([&] { rs::cuda::throw_if_status(exec); }, {c.named});
    const auto out = dout.to_host();
    for (std::size_t i = std::size_t(c.kept_cu[1]) * channels; i < out.size(); ++i) {
      EXPECT_EQ(out[i], sentinel) << "element " << i;
    }
  }
}

// Fuse weighs the dropped rows by their scores over the scores' sum, taken
// in double on both executors: a float warp sum of {1e8, -1e8, 1} adds
// lanes 0 + 2 first (1e8 + 1 rounds to 1e8), then lane 1, and gets 0, so
// the weights would fall back to uniform (row 2 / 3). Rows 0 and 1 are
// zero, so the fused row is row 2 times 1 exactly.
TEST(CudaFuse, ScoresOfBothSignsWeighAsOnTheHost) {
  const int tokens = 4, keep = 1, channels = 40;
  const auto row2 = ref::random_floats(channels, 25);
  std::vector<float> src(std::size_t(tokens) * channels, 0.0f);
  std::copy(row2.begin(), row2.end(), src.begin() + 2 * channels);
  std::fill(src.begin() + 3 * channels, src.end(), 5.0f);  // the kept row
  const std::vector<float> scores = {1e8f, -1e8f, 1.0f, 0.5f};
  const std::vector<int> keep_idx = {3};
  auto params = [&](const float* x, const float* s, const int* idx, float* out) {
    rs::FuseParams<float> p;
    p.src = x, p.scores = s, p.keep_idx = idx, p.out = out;
    p.batch = 1, p.tokens = tokens, p.keep = keep, p.channels = channels;
    return p;
  };
  std::vector<float> host_out(std::size_t(keep + 1) * channels, -1.0f);
  rs::Backend<rs::Host>::fuse_dropped(rs::Host{}, params(src.data(), scores.data(), keep_idx.data(), host_out.data()));
  EXPECT_EQ(std::vector<float>(host_out.begin() + keep * channels, host_out.end()), row2);

  REQUIRE_DEVICE();
  auto dsrc = device_copy(src), dscores = device_copy(scores);
  auto didx = device_copy(keep_idx);
  auto dout = device_copy(std::vector<float>(host_out.size(), -1.0f));
  rs::Backend<rs::Cuda>::fuse_dropped(rs::Cuda{}, params(dsrc.data(), dscores.data(), didx.data(), dout.data()));
  const auto got = dout.to_host();
  EXPECT_EQ(std::vector<float>(got.begin() + keep * channels, got.end()), row2);
}

// Packed Fuse writes row k after a sample's k kept rows: out_cu_seqlens
// (device data) giving the sample fewer than k + 1 rows would put that row
// in the next sample's, so the sample is skipped and named.
TEST(CudaFuse, PackedSampleWithNoRoomForItsRowIsNamed) {
  REQUIRE_DEVICE();
  const int batch = 2, tokens = 5, keep = 4, channels = 8;
  const std::vector<int> cu = {0, 4, 9}, kept_cu = {0, 2, 6}, out_cu = {0, 3, 7};  // sample 1 needs 5 rows
  const std::vector<int> keep_idx = {0, 3, 0, 1, 2, 4};
  const auto src = ref::random_floats(std::size_t(cu.back()) * channels, 26);
  const auto scores = ref::random_floats(std::size_t(cu.back()), 27);
  // Sample 0, which has its room, against the host (its fused row is row 2).
  const std::vector<int> room = {0, 3, 8};
  std::vector<float> host_out(std::size_t(room.back()) * channels);
  rs::FuseParams<float> h;
  h.src = src.data(), h.scores = scores.data(), h.keep_idx = keep_idx.data(), h.out = host_out.data();
  h.batch = batch, h.tokens = tokens, h.keep = keep, h.channels = channels;
  h.cu_seqlens = cu.data(), h.kept_cu_seqlens = kept_cu.data(), h.out_cu_seqlens = room.data();
  rs::Backend<rs::Host>::fuse_dropped(rs::Host{}, h);
  auto dsrc = device_copy(src), dscores = device_copy(scores);
  auto didx = device_copy(keep_idx);
  auto dcu = device_copy(cu), dkcu = device_copy(kept_cu), docu = device_copy(out_cu);
  const float sentinel = -7.0f;
  auto dout = device_copy(std::vector<float>(std::size_t(out_cu.back() + 1) * channels, sentinel));
  auto status = device_copy(std::vector<int>(4, 0));
  const rs::Cuda exec{nullptr, status.data()};
  rs::FuseParams<float> p;
  p.src = dsrc.data(), p.scores = dscores.data(), p.keep_idx = didx.data(), p.out = dout.data();
  p.batch = batch, p.tokens = tokens, p.keep = keep, p.channels = channels;
  p.cu_seqlens = dcu.data(), p.kept_cu_seqlens = dkcu.data(), p.out_cu_seqlens = docu.data();
  rs::Backend<rs::Cuda>::fuse_dropped(exec, p);
  expect_refused([&] { rs::cuda::throw_if_status(exec); },
                 {"fuse_dropped", "sample 1 4 rows: no room for its fused row after its 4 kept tokens"});
  const auto out = dout.to_host();
  for (std::size_t i = 0; i < out.size(); ++i) {
    const bool fused_row_of_sample_0 = i / channels == 2;  // out_cu[0] + its 2 kept rows
    if (fused_row_of_sample_0) {  // the same sum in the same order, up to FMA contraction
      EXPECT_NEAR(out[i], host_out[i], 1e-5f * (1.0f + std::abs(host_out[i]))) << "element " << i;
    } else {
      EXPECT_EQ(out[i], sentinel) << "element " << i;
    }
  }
}

// Packed scores: every row scored as on the CPU, whatever sample it is in.
TEST(CudaPacked, ShiftScoreMatchesHost) {
  const std::vector<int> lengths = {7, 1, 130};
  const int batch = int(lengths.size()), channels = 96;
  const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
  const int total = cu.back();
  const auto before = ref::random_floats(std::size_t(total) * channels, 31);
  const auto after = ref::random_floats(before.size(), 32);
  std::vector<float> want(static_cast<std::size_t>(total));
  rs::shift_score_varlen<rs::policies::Cosine>(rs::Host{}, before.data(), after.data(), want.data(), cu.data(), batch,
                                               total, channels);

  REQUIRE_DEVICE();
  auto db = device_copy(before), da = device_copy(after);
  auto dcu = device_copy(cu);
  rs::cuda::DeviceBuffer<float> ds(want.size());
  rs::shift_score_varlen<rs::policies::Cosine>(rs::Cuda{}, db.data(), da.data(), ds.data(), dcu.data(), batch, total,
                                               channels);
  const auto got = ds.to_host();
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5f) << "row " << i;
}

// Strided views (scores a column of a wider array, indices and rows with
// padded strides): the same indices and rows as the CPU path.
TEST(CudaTensorViews, StridedSelectAndGatherBitIdenticalToHost) {
  using View2 = rs::TensorView<const float, 2>;
  using View3 = rs::TensorView<const float, 3>;
  const int batch = 3, tokens = 57, keep = 40, channels = 24;
  const int score_stride = 2, idx_row = keep + 5, x_row = channels + 8, out_row = channels + 4;
  const auto scores = ref::random_floats(std::size_t(batch) * tokens * score_stride, 41);
  const auto x = ref::random_floats(std::size_t(batch) * tokens * x_row, 42);
  const std::array<std::int64_t, 2> score_strides{tokens * score_stride, score_stride}, idx_strides{idx_row, 1};
  const std::array<std::int64_t, 3> x_strides{tokens * x_row, x_row, 1}, out_strides{keep * out_row, out_row, 1};
  std::vector<int> want_idx(std::size_t(batch) * idx_row, -7);
  rs::select_top(rs::Host{}, View2{scores.data(), {batch, tokens}, score_strides},
                 rs::TensorView<int, 2>{want_idx.data(), {batch, keep}, idx_strides}, 1);
  std::vector<float> want(std::size_t(batch) * keep * out_row, -1.0f);
  rs::gather_tokens(rs::Host{}, View3{x.data(), {batch, tokens, channels}, x_strides},
                    rs::TensorView<const int, 2>{want_idx.data(), {batch, keep}, idx_strides},
                    rs::TensorView<float, 3>{want.data(), {batch, keep, channels}, out_strides});

  REQUIRE_DEVICE();
  auto ds = device_copy(scores), dx = device_copy(x);
  auto di = device_copy(std::vector<int>(want_idx.size(), -7));
  auto dout = device_copy(std::vector<float>(want.size(), -1.0f));
  rs::select_top(rs::Cuda{}, View2{ds.data(), {batch, tokens}, score_strides},
                 rs::TensorView<int, 2>{di.data(), {batch, keep}, idx_strides}, 1);
  ASSERT_EQ(di.to_host(), want_idx);  // the padding between rows untouched too
  rs::gather_tokens(rs::Cuda{}, View3{dx.data(), {batch, tokens, channels}, x_strides},
                    rs::TensorView<const int, 2>{di.data(), {batch, keep}, idx_strides},
                    rs::TensorView<float, 3>{dout.data(), {batch, keep, channels}, out_strides});
  EXPECT_EQ(dout.to_host(), want);
}

// A failed runtime call becomes a CudaError that names the call and the code.
TEST(CudaErrors, AFailedCallThrowsCudaErrorNamingIt) {
  REQUIRE_DEVICE();
  void* p = nullptr;
  try {
    rs::cuda_detail::check(cudaMalloc(&p, std::size_t(1) << 62), "cudaMalloc(4 EiB)");
    FAIL() << "a 4 EiB cudaMalloc succeeded";
  } catch (const rs::CudaError& e) {
    EXPECT_EQ(e.code(), cudaErrorMemoryAllocation);
    EXPECT_NE(std::string(e.what()).find("cudaMalloc(4 EiB) failed: cudaErrorMemoryAllocation"), std::string::npos)
        << e.what();
  }
  // Reported once: the next launch check must not read it as its own.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// A cuBLASLt handle belongs to the device it was made on: called with
// another device current, linear() refuses, naming both, before cuBLASLt
// could launch there on the first device's workspace. Needs two devices.
TEST(CudaErrors, BlasRefusesAnotherCurrentDevice) {
  REQUIRE_DEVICE();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  if (count < 2) GTEST_SKIP() << "needs two CUDA devices, found " << count;
  struct RestoreDevice {
    ~RestoreDevice() { cudaSetDevice(0); }
  } restore;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  rs::cuda::Blas blas(std::size_t(1) << 20);
  rs::cuda::DeviceBuffer<float> x(4 * 8), w(8 * 8), y(4 * 8);
  auto linear = [&] {
    blas.linear(rs::Cuda{}, rs::cuda::LinearShape{4, 8, 8, 8, 8}, x.data(), w.data(), static_cast<const float*>(nullptr),
                y.data());
  };
  ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
  expect_refused(linear, {"made on device 0, called with device 1 current"});
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  linear();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// The same rule on one device: an object bound to another device than the
// current one refuses, and a workspace of the current device is accepted.
TEST(CudaErrors, DeviceBoundRefusesWhenAnotherDeviceIsCurrent) {
  REQUIRE_DEVICE();
  const int current = rs::cuda_detail::current_device();
  rs::cuda_detail::DeviceBound here, elsewhere(current + 1);
  EXPECT_EQ(here.device(), current);
  EXPECT_NO_THROW(here.require_current("here"));
  const std::string message = fmt::format("made on device {}, called with device {} current", current + 1, current);
  expect_refused([&] { elsewhere.require_current("elsewhere"); }, {"elsewhere", message.c_str()});
  rs::cuda::DeviceBuffer<float> bytes(1024);
  EXPECT_NO_THROW(here.require_on_device("here", "workspace", bytes.data()));
  expect_refused([&] { elsewhere.require_on_device("elsewhere", "workspace", bytes.data()); },
                 {"workspace is memory of device"});
  EXPECT_NO_THROW(rs::cuda::Blas(bytes.data(), bytes.size() * sizeof(float)));
}

TEST(CudaGatherTokens, BitIdenticalToHostAndReportsBadIndices) {
  const int batch = 3, tokens = 197, keep = 157;
  const auto scores = ref::random_floats(std::size_t(batch) * tokens, 10);
  std::vector<int> idx(std::size_t(batch) * keep);
  rs::select_top(rs::Host{}, scores.data(), idx.data(), batch, tokens, keep, 1);
  struct Case {
    int channels;
    std::vector<float> x, want;
  };
  std::vector<Case> cases;
  for (int channels : {1, 3, 384}) {
    Case c{channels, ref::random_floats(std::size_t(batch) * tokens * channels, 9),
           std::vector<float>(std::size_t(batch) * keep * channels)};
    rs::gather_tokens(rs::Host{}, c.x.data(), idx.data(), c.want.data(), batch, tokens, keep, channels);
    cases.push_back(std::move(c));
  }

  REQUIRE_DEVICE();
  auto didx = device_copy(idx);
  for (const Case& c : cases) {
    auto dx = device_copy(c.x);
    rs::cuda::DeviceBuffer<float> dout(c.want.size());
    rs::gather_tokens(rs::Cuda{}, dx.data(), didx.data(), dout.data(), batch, tokens, keep, c.channels);
    EXPECT_EQ(dout.to_host(), c.want) << "channels " << c.channels;
  }
  const std::vector<int> bad{0, 7, 2, 1};
  auto dx = device_copy(std::vector<float>(2 * 4 * 8, 1.0f));  // batch 2, tokens 4, channels 8
  rs::cuda::DeviceBuffer<float> dout(2 * 2 * 8);
  auto di = device_copy(bad), status = device_copy(std::vector<int>(4, 0));
  rs::Cuda exec{nullptr, status.data()};
  rs::gather_tokens(exec, dx.data(), di.data(), dout.data(), 2, 4, 2, 8);
  expect_refused([&] { rs::cuda::throw_if_status(exec); }, {"keep_idx[0, 1] = 7"});
  // Reported once: the status is zeroed for the next forward.
  EXPECT_EQ(status.to_host(4), std::vector<int>(4, 0));
  EXPECT_NO_THROW(rs::cuda::throw_if_status(exec));
}

// ---- row kernels: register rows and scalar rows ------------------------------
// The residual epilogue, LayerNorm, RMSNorm and bias+GELU against double
// references on the same (storage-rounded) inputs. The channel counts and
// a one-element pointer offset send each kernel down both paths: register
// rows (16-byte aligned, whole vectors, <= 1024 channels, the last lane
// partly empty at 40 or 1000) and scalar rows (misaligned, 20 halves, 1100).

namespace {

template <class T>
class CudaRowKernels : public ::testing::Test {};
TYPED_TEST_SUITE(CudaRowKernels, DeviceStorageTypes, StorageTypeNames);

template <class T>
constexpr double row_tolerance() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  if constexpr (std::is_same_v<T, __half>) return 4e-3;
  return 3e-2;
}

template <class T>
double round_to(double x) {
  return rs::cuda::storage_to_float(rs::cuda::storage_from_float<T>(float(x)));
}

// A device operand `offset` elements into its buffer (offset 1: misaligned).
template <class T>
struct Operand {
  std::vector<float> host;  // rounded to T
  rs::cuda::DeviceBuffer<T> device;
  int offset;
  Operand(std::size_t n, std::uint32_t seed, int off) : host(rounded<T>(ref::random_floats(n, seed))), offset(off) {
    std::vector<float> padded(std::size_t(off), 0.0f);
    padded.insert(padded.end(), host.begin(), host.end());
    device.upload(padded);
  }
  T* data() { return device.data() + offset; }
  std::vector<float> download() const {
    const auto all = device.download(host.size() + std::size_t(offset));
    return {all.begin() + offset, all.end()};
  }
};

std::vector<double> layer_norm_row(const double* x, int C, const float* g, const float* b, double eps) {
  double mean = 0, var = 0;
  for (int c = 0; c < C; ++c) mean += x[c];
  mean /= C;
  for (int c = 0; c < C; ++c) var += (x[c] - mean) * (x[c] - mean);
  const double inv = 1.0 / std::sqrt(var / C + eps);
  std::vector<double> y(static_cast<std::size_t>(C));
  for (int c = 0; c < C; ++c) y[std::size_t(c)] = (x[c] - mean) * inv * g[c] + b[c];
  return y;
}

constexpr int kRows = 37;  // not a whole number of CTAs
const std::vector<std::array<int, 2>> kRowCases = {  // {channels, pointer offset}
    {8, 0}, {40, 0}, {384, 0}, {1000, 0}, {1024, 0}, {20, 0}, {1100, 0}, {384, 1}};

template <class M, rs::ScoreOperands Score, bool PostLN, class T>
void check_residual(ref::Metric metric, bool ln_out, bool bias) {
  for (auto [C, off] : kRowCases) {
    SCOPED_TRACE("channels " + std::to_string(C) + " offset " + std::to_string(off));
    const std::size_t n = std::size_t(kRows) * C;
    Operand<T> branch(n, 1, off), residual(n, 2, off), block_input(n, 3, off), out(n, 4, off), ln(n, 5, off);
    Operand<T> b(std::size_t(C), 6, off), gamma(std::size_t(C), 7, off), beta(std::size_t(C), 8, off);
    rs::cuda::DeviceBuffer<float> scores(kRows);
    rs::ResidualRows<T> e;
    e.branch = branch.data();
    e.bias = bias ? b.data() : nullptr;
    e.residual = residual.data();
    e.out = out.data();
    e.block_input = block_input.data();
    e.ln_out = ln_out ? ln.data() : nullptr;
    e.ln_next = e.ln_post = {gamma.data(), beta.data(), 1e-6f};
    e.scores = scores.data();
    e.rows = kRows;
    e.channels = C;
    rs::cuda_detail::residual_epilogue<M, Score, PostLN, T>(rs::Cuda{}, e);

    std::vector<float> want_out(n), want_ln(n), want_scores(kRows);
    for (int r = 0; r < kRows; ++r) {
      const auto row_len = static_cast<std::size_t>(C);
      std::vector<double> br(row_len), res(row_len), sum(row_len), y(row_len);
      for (int c = 0; c < C; ++c) {
        const std::size_t i = std::size_t(r) * C + c;
        br[std::size_t(c)] = double(branch.host[i]) + (bias ? b.host[std::size_t(c)] : 0.0);
        res[std::size_t(c)] = residual.host[i];
        sum[std::size_t(c)] = res[std::size_t(c)] + br[std::size_t(c)];
      }
      if (PostLN) {
        y = layer_norm_row(sum.data(), C, gamma.host.data(), beta.host.data(), 1e-6);
        for (auto& v : y) v = round_to<T>(v);
      } else {
        for (int c = 0; c < C; ++c) y[std::size_t(c)] = round_to<T>(sum[std::size_t(c)]);
        const auto l = layer_norm_row(y.data(), C, gamma.host.data(), beta.host.data(), 1e-6);
        for (int c = 0; c < C; ++c) want_ln[std::size_t(r) * C + c] = float(l[std::size_t(c)]);
      }
      for (int c = 0; c < C; ++c) want_out[std::size_t(r) * C + c] = float(y[std::size_t(c)]);
      std::vector<double> input(block_input.host.begin() + std::ptrdiff_t(r) * C,
                                block_input.host.begin() + std::ptrdiff_t(r + 1) * C);
      if (Score == rs::ScoreOperands::BranchVsResidual) want_scores[std::size_t(r)] = float(ref::score(metric, br.data(), res.data(), C));
      if (Score == rs::ScoreOperands::SumVsResidual) want_scores[std::size_t(r)] = float(ref::score(metric, sum.data(), res.data(), C));
      if (Score == rs::ScoreOperands::OutputVsBlockInput) want_scores[std::size_t(r)] = float(ref::score(metric, y.data(), input.data(), C));
    }
    expect_close(out.download(), want_out, row_tolerance<T>(), "out");
    if (ln_out) expect_close(ln.download(), want_ln, row_tolerance<T>(), "ln_out");
    if (Score != rs::ScoreOperands::None) expect_close(scores.download(kRows), want_scores, row_tolerance<T>(), "scores");
  }
}

}  // namespace

TYPED_TEST(CudaRowKernels, ResidualEpilogueMatchesDoubleReference) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  namespace Pol = rs::policies;
  using S = rs::ScoreOperands;
  check_residual<Pol::L2, S::BranchVsResidual, false, T>(ref::Metric::L2, true, false);
  check_residual<Pol::L1, S::SumVsResidual, false, T>(ref::Metric::L1, false, true);
  check_residual<Pol::Cosine, S::OutputVsBlockInput, true, T>(ref::Metric::Cosine, false, true);
  check_residual<Pol::L2, S::OutputVsBlockInput, false, T>(ref::Metric::L2, true, false);
  check_residual<Pol::L2, S::None, true, T>(ref::Metric::L2, false, false);
}

TYPED_TEST(CudaRowKernels, NormsAndGeluMatchDoubleReference) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  for (auto [C, off] : kRowCases) {
    SCOPED_TRACE("channels " + std::to_string(C) + " offset " + std::to_string(off));
    const std::size_t n = std::size_t(kRows) * C;
    // LayerNorm of every third row of a [3 kRows, C] buffer, in place.
    Operand<T> x(3 * n, 1, off), gamma(std::size_t(C), 2, off), beta(std::size_t(C), 3, off);
    rs::cuda_detail::layer_norm_rows<T>(rs::Cuda{}, x.data(), 3 * C, x.data(), 3 * C, kRows, C,
                                        {gamma.data(), beta.data(), 1e-5f});
    std::vector<float> want = x.host;
    for (int r = 0; r < kRows; ++r) {
      std::vector<double> row(x.host.begin() + std::ptrdiff_t(r) * 3 * C, x.host.begin() + std::ptrdiff_t(r) * 3 * C + C);
      const auto y = layer_norm_row(row.data(), C, gamma.host.data(), beta.host.data(), 1e-5);
      for (int c = 0; c < C; ++c) want[std::size_t(r) * 3 * C + c] = float(y[std::size_t(c)]);
    }
    expect_close(x.download(), want, row_tolerance<T>(), "layer_norm_rows");

    // RMSNorm of one picked token per sample of [kRows, 5, C].
    const int tokens = 5;
    Operand<T> src(n * tokens, 4, off), dst(n, 5, off);
    std::vector<int> pick(kRows);
    for (int r = 0; r < kRows; ++r) pick[std::size_t(r)] = (r * 3) % tokens;
    auto dpick = device_copy(pick);
    rs::cuda_detail::rms_norm_rows<T>(rs::Cuda{}, src.data(), dst.data(), kRows, C, gamma.data(), 1e-5f, dpick.data(),
                                      tokens);
    std::vector<float> want_rms(n);
    for (int r = 0; r < kRows; ++r) {
      const float* row = src.host.data() + (std::size_t(r) * tokens + std::size_t(pick[std::size_t(r)])) * C;
      double sq = 0;
      for (int c = 0; c < C; ++c) sq += double(row[c]) * row[c];
      const double inv = 1.0 / std::sqrt(sq / C + 1e-5);
      for (int c = 0; c < C; ++c) want_rms[std::size_t(r) * C + c] = float(row[c] * inv * gamma.host[std::size_t(c)]);
    }
    expect_close(dst.download(), want_rms, row_tolerance<T>(), "rms_norm_rows");

    // GELU(h + bias), with and without the bias.
    for (bool with_bias : {true, false}) {
      Operand<T> h(n, 6, off), bias(std::size_t(C), 7, off);
      rs::cuda_detail::bias_gelu<T>(rs::Cuda{}, h.data(), kRows, C, with_bias ? bias.data() : nullptr);
      std::vector<float> want_h(n);
      for (std::size_t i = 0; i < n; ++i) {
        want_h[i] = float(ref::gelu(double(h.host[i]) + (with_bias ? bias.host[i % std::size_t(C)] : 0.0)));
      }
      expect_close(h.download(), want_h, row_tolerance<T>(), with_bias ? "bias_gelu" : "gelu");
    }
  }
}
