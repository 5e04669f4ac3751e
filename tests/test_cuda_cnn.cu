// The CnnRows backbone on CUDA (cuDNN convolutions) against the CPU path,
// itself tested against the double reference: convolutions for every
// epilogue and the ResNet shapes' kernel / stride / padding, the bottleneck
// Block (scores, kept rows and columns, output), and a small ResNet with a
// line-pruning schedule. Skipped (ctest "Skipped") without a device.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <repshift/cuda/cudnn_models.cuh>

#include "cuda_test_support.cuh"
#include "model_fixtures.hpp"
#include "reference.hpp"
#include "test_support.hpp"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

// Host tensors of one bottleneck and their device copies, both as views.
struct Bottleneck {
  std::vector<std::vector<float>> host;
  std::vector<rs::cuda::DeviceBuffer<float>> device;
  rs::BottleneckWeights h, d;

  Bottleneck(int in, int mid, int out, int stride, bool projection, std::uint32_t seed) {
    auto add = [&](std::size_t n, float r) {
      host.push_back(ref::random_floats(n, seed++, -r, r));
      device.push_back(to_device<float>(host.back()));
      return std::make_pair(host.back().data(), device.back().data());
    };
    host.reserve(8);
    device.reserve(8);
    h = d = rs::BottleneckWeights{in, mid, out, stride};
    std::tie(h.conv1_weight, d.conv1_weight) = add(std::size_t(mid) * in, 0.5f);
    std::tie(h.conv1_bias, d.conv1_bias) = add(std::size_t(mid), 0.2f);
    std::tie(h.conv2_weight, d.conv2_weight) = add(std::size_t(mid) * mid * 9, 0.3f);
    std::tie(h.conv2_bias, d.conv2_bias) = add(std::size_t(mid), 0.2f);
    std::tie(h.conv3_weight, d.conv3_weight) = add(std::size_t(out) * mid, 0.5f);
    std::tie(h.conv3_bias, d.conv3_bias) = add(std::size_t(out), 0.2f);
    if (projection) {
      std::tie(h.down_weight, d.down_weight) = add(std::size_t(out) * in, 0.5f);
      std::tie(h.down_bias, d.down_bias) = add(std::size_t(out), 0.2f);
    }
  }
};

}  // namespace

TEST(CudaDnnConv, MatchesHostConvolutions) {
  REQUIRE_DEVICE();
  rs::cuda::Dnn dnn;
  struct Case {
    rs::Conv2dShape s;
    int batch, h, w;
  };
  for (const Case& c : {Case{{3, 16, 7, 2, 3}, 2, 32, 30}, Case{{16, 8, 1, 1, 0}, 3, 9, 11}, Case{{8, 8, 3, 1, 1}, 2, 9, 11},
                        Case{{8, 12, 3, 2, 1}, 2, 10, 13}, Case{{8, 12, 1, 2, 0}, 2, 10, 13}}) {
    const int Ho = int(c.s.out_size(c.h)), Wo = int(c.s.out_size(c.w));
    const auto x = ref::random_floats(std::size_t(c.batch) * c.s.in_channels * c.h * c.w, 1);
    const auto wt = ref::random_floats(std::size_t(c.s.out_channels * c.s.patch()), 2);
    const auto bias = ref::random_floats(std::size_t(c.s.out_channels), 3);
    auto dx = to_device<float>(x), dw = to_device<float>(wt), db = to_device<float>(bias);
    const std::size_t n = std::size_t(c.batch) * c.s.out_channels * Ho * Wo;
    rs::cuda::DeviceBuffer<float> dy(n);
    std::vector<float> want(n), cols;
    const std::string what = std::to_string(c.s.kernel) + "x" + std::to_string(c.s.kernel) + "/" + std::to_string(c.s.stride);

    rs::cpu::conv2d<rs::ConvEpilogue::None>(rs::Host{}, c.s, x.data(), c.batch, c.h, c.w, wt.data(), nullptr, want.data(), cols);
    dnn.conv2d<rs::ConvEpilogue::None>(rs::Cuda{}, c.s, dx.data(), c.batch, c.h, c.w, dw.data(),
                                       static_cast<const float*>(nullptr), dy.data());
    expect_close(dy.download(n), want, 1e-5, what + " none");
    rs::cpu::conv2d<rs::ConvEpilogue::Bias>(rs::Host{}, c.s, x.data(), c.batch, c.h, c.w, wt.data(), bias.data(), want.data(), cols);
    dnn.conv2d<rs::ConvEpilogue::Bias>(rs::Cuda{}, c.s, dx.data(), c.batch, c.h, c.w, dw.data(), db.data(), dy.data());
    expect_close(dy.download(n), want, 1e-5, what + " bias");
    rs::cpu::conv2d<rs::ConvEpilogue::BiasRelu>(rs::Host{}, c.s, x.data(), c.batch, c.h, c.w, wt.data(), bias.data(), want.data(), cols);
    dnn.conv2d<rs::ConvEpilogue::BiasRelu>(rs::Cuda{}, c.s, dx.data(), c.batch, c.h, c.w, dw.data(), db.data(), dy.data());
    expect_close(dy.download(n), want, 1e-5, what + " bias+relu");
  }
}

template <class M>
class CudaCnnBlock : public ::testing::Test {};
using CnnMetrics = ::testing::Types<P::L1, P::L2, P::Cosine, P::TokenNorm>;
TYPED_TEST_SUITE(CudaCnnBlock, CnnMetrics);

TYPED_TEST(CudaCnnBlock, MatchesHostBlock) {
  REQUIRE_DEVICE();
  using B = rs::Block<P::CnnRows, P::BlockOutput, TypeParam>;
  const int batch = 2, c = 16, h = 23, w = 29, keep_rows = 17, keep_cols = 20;
  const Bottleneck bw(c, 4, c, 1, false, 10);
  const auto x = ref::random_floats(std::size_t(batch) * c * h * w, 11);
  const std::size_t n_out = std::size_t(batch) * c * keep_rows * keep_cols;

  rs::Workspace<rs::Host> hws;
  std::vector<float> want(n_out), want_rows(std::size_t(batch) * h), want_cols(std::size_t(batch) * w);
  std::vector<int> want_kr(std::size_t(batch) * keep_rows), want_kc(std::size_t(batch) * keep_cols);
  auto ha = rs::CnnBlockArgs::dense(x.data(), want.data(), batch, h, w);
  ha.keep_rows = keep_rows, ha.keep_cols = keep_cols, ha.row_scores = want_rows.data(), ha.col_scores = want_cols.data();
  ha.kept_rows = want_kr.data(), ha.kept_cols = want_kc.data();
  B::forward(rs::Host{}, bw.h, ha, hws);

  rs::cuda::Dnn dnn;
  rs::Workspace<rs::Cuda> dws(dnn);
  B::reserve(dws, bw.d, batch, h, w);
  auto dx = to_device<float>(x);
  rs::cuda::DeviceBuffer<float> dy(n_out), drows(want_rows.size()), dcols(want_cols.size());
  rs::cuda::DeviceBuffer<int> dkr(want_kr.size()), dkc(want_kc.size());
  auto da = rs::CnnBlockArgs::dense(dx.data(), dy.data(), batch, h, w);
  da.keep_rows = keep_rows, da.keep_cols = keep_cols, da.row_scores = drows.data(), da.col_scores = dcols.data();
  da.kept_rows = dkr.data(), da.kept_cols = dkc.data();
  B::forward(rs::Cuda{}, bw.d, da, dws);

  expect_close(drows.download(want_rows.size()), want_rows, 2e-5, "row scores");
  expect_close(dcols.download(want_cols.size()), want_cols, 2e-5, "column scores");
  EXPECT_EQ(dkr.to_host(want_kr.size()), want_kr);
  EXPECT_EQ(dkc.to_host(want_kc.size()), want_kc);
  expect_close(dy.download(n_out), want, 2e-5, "pruned map");

  // A workspace reserved for a smaller map is refused, not grown.
  rs::Workspace<rs::Cuda> small(dnn);
  B::reserve(small, bw.d, 1, h, w);
  expect_refused([&] { B::forward(rs::Cuda{}, bw.d, da, small); }, {"workspace", "reserve()"});
}

TEST(CudaCnnBlock, ProjectionShortcutUnpruned) {
  REQUIRE_DEVICE();
  using B = rs::Block<P::CnnRows, P::BlockOutput, P::L2>;
  const int batch = 2, in = 8, out = 16, h = 14, w = 11;
  const Bottleneck bw(in, 4, out, 2, true, 30);
  const auto x = ref::random_floats(std::size_t(batch) * in * h * w, 31);
  const int ho = 7, wo = 6;
  std::vector<float> want(std::size_t(batch) * out * ho * wo);
  rs::Workspace<rs::Host> hws;
  B::forward(rs::Host{}, bw.h, rs::CnnBlockArgs::dense(x.data(), want.data(), batch, h, w), hws);
  rs::cuda::Dnn dnn;
  rs::Workspace<rs::Cuda> dws(dnn);
  B::reserve(dws, bw.d, batch, h, w);
  auto dx = to_device<float>(x);
  rs::cuda::DeviceBuffer<float> dy(want.size());
  B::forward(rs::Cuda{}, bw.d, rs::CnnBlockArgs::dense(dx.data(), dy.data(), batch, h, w), dws);
  expect_close(dy.download(want.size()), want, 2e-5, "projected block");
}

TEST(CudaResNet, MatchesHostModelLinePrunedAndNot) {
  REQUIRE_DEVICE();
  const rs::ResNetConfig cfg = fixtures::tiny_resnet();
  const auto w = rs::ResNetWeights::random(cfg, 5);
  const int batch = 3;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 6);
  rs::ResNet<> hmodel(w);
  rs::cuda::Dnn dnn;
  rs::cuda::Blas blas;
  rs::cuda::ResNet<> dmodel(w, {blas, dnn});
  dmodel.reserve(batch);
  auto dimages = to_device<float>(images);
  rs::cuda::DeviceBuffer<float> dlogits(std::size_t(batch) * cfg.num_classes);
  for (const auto& schedule : {rs::LinePruneSchedule::none(), rs::LinePruneSchedule{{{1, 2, 2}, {2, 1, 1}}}}) {
    std::vector<float> want(std::size_t(batch) * cfg.num_classes);
    rs::ResNetTrace htrace, dtrace;
    hmodel.forward(rs::Host{}, images.data(), batch, want.data(), schedule, &htrace);
    dmodel.forward(rs::Cuda{}, dimages.data(), batch, dlogits.data(), schedule, &dtrace);
    expect_close(dlogits.download(want.size()), want, 1e-4, "logits");
    EXPECT_EQ(dtrace.sizes, htrace.sizes);
    EXPECT_EQ(dtrace.kept_rows, htrace.kept_rows);
    EXPECT_EQ(dtrace.kept_cols, htrace.kept_cols);
  }
  expect_refused([&] { dmodel.forward(rs::Cuda{}, dimages.data(), batch + 1, dlogits.data()); }, {"reserve"});
}
