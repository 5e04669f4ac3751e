// The CnnRows backbone on CUDA (cuDNN convolutions) against the CPU path,
// itself tested against the double reference: convolutions for every
// epilogue and the ResNet shapes' kernel / stride / padding, the bottleneck
// Block (scores, kept rows and columns, output), and a small ResNet with a
// line-pruning schedule. Without a device each test runs its CPU side, then
// skips (ctest "Skipped").

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

// Host tensors of one bottleneck as views (h); upload() adds their device
// copies (d), so a test computes its CPU side before it needs a GPU.
struct Bottleneck {
  using Field = const float* rs::BottleneckWeights::*;
  std::vector<std::vector<float>> host;
  std::vector<Field> fields;  // where each host tensor sits in h
  std::vector<rs::cuda::DeviceBuffer<float>> device;
  rs::BottleneckWeights h, d;

  Bottleneck(int in, int mid, int out, int stride, bool projection, std::uint32_t seed) {
    auto add = [&](Field f, std::size_t n, float r) {
      host.push_back(ref::random_floats(n, seed++, -r, r));
      fields.push_back(f);
    };
    using W = rs::BottleneckWeights;
    add(&W::conv1_weight, std::size_t(mid) * in, 0.5f);
    add(&W::conv1_bias, std::size_t(mid), 0.2f);
    add(&W::conv2_weight, std::size_t(mid) * mid * 9, 0.3f);
    add(&W::conv2_bias, std::size_t(mid), 0.2f);
    add(&W::conv3_weight, std::size_t(out) * mid, 0.5f);
    add(&W::conv3_bias, std::size_t(out), 0.2f);
    if (projection) {
      add(&W::down_weight, std::size_t(out) * in, 0.5f);
      add(&W::down_bias, std::size_t(out), 0.2f);
    }
    h = d = rs::BottleneckWeights{in, mid, out, stride};
    for (std::size_t i = 0; i < host.size(); ++i) h.*fields[i] = host[i].data();
  }

  void upload() {
    device.clear();
    device.reserve(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) {
      device.push_back(to_device<float>(host[i]));
      d.*fields[i] = device.back().data();
    }
  }
};

}  // namespace

TEST(CudaDnnConv, MatchesHostConvolutions) {
  struct Shape {
    rs::Conv2dShape s;
    int batch, h, w;
  };
  struct Case : Shape {
    std::vector<float> x, wt, bias;
    std::vector<float> want[3];  // no epilogue, bias, bias + ReLU
  };
  std::vector<Case> cases;
  for (const Shape& shape : {Shape{{3, 16, 7, 2, 3}, 2, 32, 30}, Shape{{16, 8, 1, 1, 0}, 3, 9, 11},
                             Shape{{8, 8, 3, 1, 1}, 2, 9, 11}, Shape{{8, 12, 3, 2, 1}, 2, 10, 13},
                             Shape{{8, 12, 1, 2, 0}, 2, 10, 13}}) {
    Case c;
    static_cast<Shape&>(c) = shape;
    const auto& s = c.s;
    c.x = ref::random_floats(std::size_t(c.batch) * s.in_channels * c.h * c.w, 1);
    c.wt = ref::random_floats(std::size_t(s.out_channels * s.patch()), 2);
    c.bias = ref::random_floats(std::size_t(s.out_channels), 3);
    const std::size_t n = std::size_t(c.batch) * s.out_channels * s.out_size(c.h) * s.out_size(c.w);
    for (auto& v : c.want) v.resize(n);
    std::vector<float> cols;
    rs::cpu::conv2d<rs::ConvEpilogue::None>(rs::Host{}, s, c.x.data(), c.batch, c.h, c.w, c.wt.data(), nullptr,
                                            c.want[0].data(), cols);
    rs::cpu::conv2d<rs::ConvEpilogue::Bias>(rs::Host{}, s, c.x.data(), c.batch, c.h, c.w, c.wt.data(), c.bias.data(),
                                            c.want[1].data(), cols);
    rs::cpu::conv2d<rs::ConvEpilogue::BiasRelu>(rs::Host{}, s, c.x.data(), c.batch, c.h, c.w, c.wt.data(),
                                                c.bias.data(), c.want[2].data(), cols);
    cases.push_back(std::move(c));
  }

  REQUIRE_DEVICE();
  rs::cuda::Dnn dnn;
  for (const Case& c : cases) {
    auto dx = to_device<float>(c.x), dw = to_device<float>(c.wt), db = to_device<float>(c.bias);
    const std::size_t n = c.want[0].size();
    rs::cuda::DeviceBuffer<float> dy(n);
    const std::string what = std::to_string(c.s.kernel) + "x" + std::to_string(c.s.kernel) + "/" + std::to_string(c.s.stride);
    dnn.conv2d<rs::ConvEpilogue::None>(rs::Cuda{}, c.s, dx.data(), c.batch, c.h, c.w, dw.data(),
                                       static_cast<const float*>(nullptr), dy.data());
    expect_close(dy.download(n), c.want[0], 1e-5, what + " none");
    dnn.conv2d<rs::ConvEpilogue::Bias>(rs::Cuda{}, c.s, dx.data(), c.batch, c.h, c.w, dw.data(), db.data(), dy.data());
    expect_close(dy.download(n), c.want[1], 1e-5, what + " bias");
    dnn.conv2d<rs::ConvEpilogue::BiasRelu>(rs::Cuda{}, c.s, dx.data(), c.batch, c.h, c.w, dw.data(), db.data(), dy.data());
    expect_close(dy.download(n), c.want[2], 1e-5, what + " bias+relu");
  }
}

template <class M>
class CudaCnnBlock : public ::testing::Test {};
using CnnMetrics = ::testing::Types<P::L1, P::L2, P::Cosine, P::TokenNorm>;
TYPED_TEST_SUITE(CudaCnnBlock, CnnMetrics);

TYPED_TEST(CudaCnnBlock, MatchesHostBlock) {
  using B = rs::Block<P::CnnRows, P::BlockOutput, TypeParam>;
  const int batch = 2, c = 16, h = 23, w = 29, keep_rows = 17, keep_cols = 20;
  Bottleneck bw(c, 4, c, 1, false, 10);
  const auto x = ref::random_floats(std::size_t(batch) * c * h * w, 11);
  const std::size_t n_out = std::size_t(batch) * c * keep_rows * keep_cols;

  rs::Workspace<rs::Host> hws;
  std::vector<float> want(n_out), want_rows(std::size_t(batch) * h), want_cols(std::size_t(batch) * w);
  std::vector<int> want_kr(std::size_t(batch) * keep_rows), want_kc(std::size_t(batch) * keep_cols);
  auto ha = rs::CnnBlockArgs::dense(x.data(), want.data(), batch, h, w);
  ha.keep_rows = keep_rows, ha.keep_cols = keep_cols, ha.row_scores = want_rows.data(), ha.col_scores = want_cols.data();
  ha.kept_rows = want_kr.data(), ha.kept_cols = want_kc.data();
  B::forward(rs::Host{}, bw.h, ha, hws);

  REQUIRE_DEVICE();
  bw.upload();
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
  using B = rs::Block<P::CnnRows, P::BlockOutput, P::L2>;
  const int batch = 2, in = 8, out = 16, h = 14, w = 11;
  Bottleneck bw(in, 4, out, 2, true, 30);
  const auto x = ref::random_floats(std::size_t(batch) * in * h * w, 31);
  const int ho = 7, wo = 6;
  std::vector<float> want(std::size_t(batch) * out * ho * wo);
  rs::Workspace<rs::Host> hws;
  B::forward(rs::Host{}, bw.h, rs::CnnBlockArgs::dense(x.data(), want.data(), batch, h, w), hws);

  REQUIRE_DEVICE();
  bw.upload();
  rs::cuda::Dnn dnn;
  rs::Workspace<rs::Cuda> dws(dnn);
  B::reserve(dws, bw.d, batch, h, w);
  auto dx = to_device<float>(x);
  rs::cuda::DeviceBuffer<float> dy(want.size());
  B::forward(rs::Cuda{}, bw.d, rs::CnnBlockArgs::dense(dx.data(), dy.data(), batch, h, w), dws);
  expect_close(dy.download(want.size()), want, 2e-5, "projected block");
}

TEST(CudaResNet, MatchesHostModelLinePrunedAndNot) {
  const rs::ResNetConfig cfg = fixtures::tiny_resnet();
  const auto w = rs::ResNetWeights::random(cfg, 5);
  const int batch = 3;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 6);
  const std::vector<rs::LinePruneSchedule> schedules = {rs::LinePruneSchedule::none(),
                                                        rs::LinePruneSchedule{{{1, 2, 2}, {2, 1, 1}}}};
  rs::ResNet<> hmodel(w);
  std::vector<std::vector<float>> want;
  std::vector<rs::ResNetTrace> htrace(schedules.size());
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    want.emplace_back(std::size_t(batch) * cfg.num_classes);
    hmodel.forward(rs::Host{}, images.data(), batch, want.back().data(), schedules[i], &htrace[i]);
  }

  REQUIRE_DEVICE();
  rs::cuda::Dnn dnn;
  rs::cuda::Blas blas;
  rs::cuda::ResNet<> dmodel(w, {blas, dnn});
  dmodel.reserve(batch);
  auto dimages = to_device<float>(images);
  rs::cuda::DeviceBuffer<float> dlogits(std::size_t(batch) * cfg.num_classes);
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    rs::ResNetTrace dtrace;
    dmodel.forward(rs::Cuda{}, dimages.data(), batch, dlogits.data(), schedules[i], &dtrace);
    expect_close(dlogits.download(want[i].size()), want[i], 1e-4, "logits");
    EXPECT_EQ(dtrace.sizes, htrace[i].sizes);
    EXPECT_EQ(dtrace.kept_rows, htrace[i].kept_rows);
    EXPECT_EQ(dtrace.kept_cols, htrace[i].kept_cols);
  }
  expect_refused([&] { dmodel.forward(rs::Cuda{}, dimages.data(), batch + 1, dlogits.data()); }, {"reserve"});
}
