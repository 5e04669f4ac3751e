// The CUDA entry points against the CPU path (itself tested against the
// double reference): scores within float noise, selections and gathers
// bit-identical. Skipped (GTEST_SKIP -> ctest "Skipped") without a device.

#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <repshift/cuda.hpp>

#include "cuda_test_support.cuh"
#include "reference.hpp"
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
  REQUIRE_DEVICE();
  using M = typename TypeParam::Metric;
  using T = typename TypeParam::Type;
  using H = typename HostTwin<T>::type;
  std::uint32_t seed = 3;
  for (int tokens : {1, 197, 1025}) {
    for (int channels : {1, 3, 384, 1000}) {
      const int batch = 3;
      const std::size_t n = std::size_t(batch) * tokens * channels;
      std::vector<H> before, after;
      for (float x : ref::random_floats(n, seed++)) before.push_back(H(x));
      for (float x : ref::random_floats(n, seed++)) after.push_back(H(x));
      std::vector<float> want(std::size_t(batch) * tokens);
      rs::shift_score<M>(rs::Host{}, before.data(), after.data(), want.data(), batch, tokens, channels);

      auto d_before = device_copy(as_device_type<T>(before)), d_after = device_copy(as_device_type<T>(after));
      rs::cuda::DeviceBuffer<float> d_scores(want.size());
      rs::shift_score<M>(rs::Cuda{}, d_before.data(), d_after.data(), d_scores.data(), batch, tokens, channels);
      const auto got = d_scores.to_host();
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 2e-5 * (1 + std::abs(want[i]))) << "tokens " << tokens << " channels " << channels;
    }
  }
}

TEST(CudaShiftScore, StridedViewTakesTheScalarPath) {
  REQUIRE_DEVICE();
  const int batch = 2, tokens = 9, channels = 6;  // token stride 7: not vectorisable
  const auto wide = ref::random_floats(std::size_t(batch) * tokens * 7, 1), other = ref::random_floats(wide.size(), 2);
  rs::TensorView<const float, 3> hb{wide.data(), {batch, tokens, channels}, {tokens * 7, 7, 1}};
  rs::TensorView<const float, 3> ha{other.data(), {batch, tokens, channels}, {tokens * 7, 7, 1}};
  std::vector<float> want(batch * tokens);
  rs::shift_score<rs::policies::L2>(rs::Host{}, hb, ha, rs::make_view(want.data(), {batch, tokens}));
  auto db = device_copy(wide), da = device_copy(other);
  rs::cuda::DeviceBuffer<float> ds(want.size());
  rs::TensorView<const float, 3> vb{db.data(), hb.shape, hb.stride}, va{da.data(), ha.shape, ha.stride};
  rs::shift_score<rs::policies::L2>(rs::Cuda{}, vb, va, rs::make_view(ds.data(), {batch, tokens}));
  const auto got = ds.to_host();
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5f);
}

TEST(CudaSelectTop, BitIdenticalToHost) {
  REQUIRE_DEVICE();
  std::mt19937 gen(5);
  for (int tokens : {1, 2, 197, 256, 257, 1025, 4096}) {
    for (int protect : {0, 1}) {
      for (double ratio : {1.0, 0.7, 0.5, 0.01}) {
        for (int levels : {3, 1 << 20}) {
          const int batch = 4, keep = rs::policies::keep_count(tokens, ratio, protect);
          std::uniform_int_distribution<int> dist(0, levels - 1);
          std::vector<float> scores(std::size_t(batch) * tokens);
          for (auto& s : scores) s = float(dist(gen)) * 0.25f;
          if (tokens > 5) scores[3] = std::numeric_limits<float>::quiet_NaN(), scores[4] = -0.0f;
          std::vector<int> want(std::size_t(batch) * keep);
          rs::select_top(rs::Host{}, scores.data(), want.data(), batch, tokens, keep, protect);
          auto ds = device_copy(scores);
          rs::cuda::DeviceBuffer<int> di(want.size());
          rs::select_top(rs::Cuda{}, ds.data(), di.data(), batch, tokens, keep, protect);
          ASSERT_EQ(di.to_host(), want) << "tokens " << tokens << " keep " << keep << " protect " << protect;
        }
      }
    }
  }
}

// Packed (varlen) select and gather: the same indices and rows as the CPU
// path, each sample with its own length and keep count (cu_seqlens on the device).
TEST(CudaPacked, SelectAndGatherBitIdenticalToHost) {
  REQUIRE_DEVICE();
  const std::vector<int> lengths = {23, 5, 300, 1, 197};
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

TEST(CudaSelectTop, RefusesMoreTokensThanOneTile) {
  REQUIRE_DEVICE();
  rs::cuda::DeviceBuffer<float> ds(5000);
  rs::cuda::DeviceBuffer<int> di(10);
  EXPECT_THROW(rs::select_top(rs::Cuda{}, ds.data(), di.data(), 1, 5000, 10), rs::InvalidArgument);
}

TEST(CudaGatherTokens, BitIdenticalToHostAndReportsBadIndices) {
  REQUIRE_DEVICE();
  for (int channels : {1, 3, 384}) {
    const int batch = 3, tokens = 197, keep = 157;
    const auto x = ref::random_floats(std::size_t(batch) * tokens * channels, 9);
    const auto scores = ref::random_floats(std::size_t(batch) * tokens, 10);
    std::vector<int> idx(std::size_t(batch) * keep);
    rs::select_top(rs::Host{}, scores.data(), idx.data(), batch, tokens, keep, 1);
    std::vector<float> want(std::size_t(batch) * keep * channels);
    rs::gather_tokens(rs::Host{}, x.data(), idx.data(), want.data(), batch, tokens, keep, channels);
    auto dx = device_copy(x);
    rs::cuda::DeviceBuffer<float> dout(want.size());
    auto di = device_copy(idx);
    rs::gather_tokens(rs::Cuda{}, dx.data(), di.data(), dout.data(), batch, tokens, keep, channels);
    EXPECT_EQ(dout.to_host(), want);
  }
  const std::vector<int> bad{0, 7, 2, 1};
  auto dx = device_copy(std::vector<float>(4 * 8, 1.0f));
  rs::cuda::DeviceBuffer<float> dout(4 * 8);
  auto di = device_copy(bad), status = device_copy(std::vector<int>(4, 0));
  rs::Cuda exec{nullptr, status.data()};
  rs::gather_tokens(exec, dx.data(), di.data(), dout.data(), 2, 4, 2, 8);
  expect_refused([&] { rs::cuda::throw_if_status(exec); }, {"keep_idx[0, 1] = 7"});
}
