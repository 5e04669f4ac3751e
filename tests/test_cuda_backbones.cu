// The CUDA kernels of the SsmScan and CnnRows backbones: the selective scan
// and causal conv against the double reference (reference_scan.hpp), both
// directions, every register bucket of the state (8, 16, 32, 64; exact and
// below its bucket), channel counts off the
// CTA width, several shared-memory chunks; line scores and line removal
// against the CPU path (itself tested against a double reference); the
// SsmScan Block and the Vim model on CUDA against their CPU twins.
// Without a device each test runs its CPU side, then skips (ctest "Skipped").

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <repshift/cpu/line_prune.hpp>
#include <repshift/cuda.hpp>
#include <repshift/cuda/models.cuh>

#include "cuda_test_support.cuh"
#include "model_fixtures.hpp"
#include "reference.hpp"
#include "reference_scan.hpp"
#include "test_support.hpp"

namespace rs = repshift;

namespace {

struct ScanCase {
  int batch, length, channels, state;
};

}  // namespace

class CudaSelectiveScan : public ::testing::TestWithParam<ScanCase> {};

TEST_P(CudaSelectiveScan, BothDirectionsMatchTheSequentialReference) {
  const ScanCase k = GetParam();
  const std::size_t rows = std::size_t(k.batch) * k.length;
  const int d = k.channels, n = k.state;
  const auto u = ref::random_floats(rows * d, 1, -2.0f, 2.0f), z = ref::random_floats(rows * d, 2, -2.0f, 2.0f);
  const auto dt = ref::random_floats(rows * d, 3, -4.0f, 1.0f), bc = ref::random_floats(rows * 2 * n, 4, -1.0f, 1.0f);
  const auto dt_bias = ref::random_floats(std::size_t(d), 5, -1.0f, 0.0f);
  const auto A_log = ref::random_floats(std::size_t(d) * n, 6, -1.0f, 2.0f), D = ref::random_floats(std::size_t(d), 7, 0.0f, 1.0f);
  ref::Mat ud(u.begin(), u.end()), zd(z.begin(), z.end()), dtd(dt.begin(), dt.end()), B(rows * n), C(rows * n);
  for (std::size_t r = 0; r < rows; ++r)
    for (int i = 0; i < n; ++i) B[r * n + i] = bc[r * 2 * n + i], C[r * n + i] = bc[r * 2 * n + n + i];
  const ref::Mat fwd = ref::scan(ud, dtd, dt_bias.data(), A_log.data(), B, C, D.data(), &zd, k.batch, k.length, d, n);
  auto flip = [&](const ref::Mat& m, int w) { return ref::flip(m, k.batch, k.length, w); };
  const ref::Mat bwd = flip(ref::scan(flip(ud, d), flip(dtd, d), dt_bias.data(), A_log.data(), flip(B, n), flip(C, n),
                                      D.data(), nullptr, k.batch, k.length, d, n), d);

  REQUIRE_DEVICE();
  auto du = to_device<float>(u), dz = to_device<float>(z), ddt = to_device<float>(dt), dbc = to_device<float>(bc);
  auto dbias = to_device<float>(dt_bias), dA = to_device<float>(A_log), dD = to_device<float>(D);
  auto out = to_device<float>(std::vector<float>(rows * d, 1.0f));
  rs::SelectiveScanParams p;
  p.u = du.data();
  p.dt = ddt.data();
  p.dt_bias = dbias.data();
  p.A_log = dA.data();
  p.B = dbc.data();
  p.C = dbc.data() + n;
  p.D = dD.data();
  p.z = dz.data();
  p.out = out.data();
  p.batch = k.batch;
  p.length = k.length;
  p.channels = d;
  p.state = n;
  p.u_stride = p.dt_stride = p.z_stride = p.out_stride = d;
  p.bc_stride = 2 * n;
  rs::cuda::selective_scan<rs::ScanDirection::Forward>(rs::Cuda{}, p);
  EXPECT_LT(ref::max_rel_error(out.download(), fwd), 2e-4);

  // Backward, ungated, halved and accumulated onto the forward result.
  p.z = nullptr;
  p.out_scale = 0.5f;
  rs::cuda::selective_scan<rs::ScanDirection::Backward, true>(rs::Cuda{}, p);
  ref::Mat both(fwd.size());
  for (std::size_t i = 0; i < both.size(); ++i) both[i] = fwd[i] + 0.5 * bwd[i];
  EXPECT_LT(ref::max_rel_error(out.download(), both), 2e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaSelectiveScan,
                         ::testing::Values(ScanCase{2, 197, 384, 16}, ScanCase{1, 33, 37, 16}, ScanCase{3, 70, 5, 5},
                                           ScanCase{1, 1, 130, 64}, ScanCase{2, 41, 70, 12}, ScanCase{1, 29, 33, 24},
                                           ScanCase{1, 20, 9, 8}, ScanCase{1, 9, 33, 32}, ScanCase{1, 37, 45, 40}),
                         [](const auto& info) {
                           const ScanCase& k = info.param;
                           return "B" + std::to_string(k.batch) + "L" + std::to_string(k.length) + "D" +
                                  std::to_string(k.channels) + "N" + std::to_string(k.state);
                         });

TEST(CudaCausalConv, BothDirectionsMatchTheReference) {
  const int batch = 2, length = 45, d = 131, k = 4;
  const auto x = ref::random_floats(std::size_t(batch) * length * d, 8, -2.0f, 2.0f);
  const auto w = ref::random_floats(std::size_t(d) * k, 9, -1.0f, 1.0f), bias = ref::random_floats(std::size_t(d), 10, -1.0f, 1.0f);
  const ref::Mat xd(x.begin(), x.end());
  const ref::Mat forward = ref::conv_silu(xd, batch, length, d, w.data(), bias.data(), k);
  const ref::Mat mirrored = ref::flip(ref::conv_silu(ref::flip(xd, batch, length, d), batch, length, d, w.data(),
                                                     bias.data(), k), batch, length, d);

  REQUIRE_DEVICE();
  auto dx = to_device<float>(x), dw = to_device<float>(w), db = to_device<float>(bias);
  rs::cuda::DeviceBuffer<float> out(x.size());
  rs::CausalConvParams p;
  p.x = dx.data();
  p.weight = dw.data();
  p.bias = db.data();
  p.out = out.data();
  p.batch = batch;
  p.length = length;
  p.channels = d;
  p.kernel = k;
  p.x_stride = p.out_stride = d;
  rs::cuda::causal_conv1d_silu<rs::ScanDirection::Forward>(rs::Cuda{}, p);
  EXPECT_LT(ref::max_rel_error(out.download(), forward), 1e-5);
  rs::cuda::causal_conv1d_silu<rs::ScanDirection::Backward>(rs::Cuda{}, p);
  EXPECT_LT(ref::max_rel_error(out.download(), mirrored), 1e-5);
}

TEST(CudaLines, ScoresAndRemovalMatchTheHostPath) {
  const int batch = 2, c = 19, h = 13, w = 11, kr = 9, kc = 7;
  const auto before = ref::random_floats(std::size_t(batch) * c * h * w, 11, -2.0f, 2.0f);
  const auto after = ref::random_floats(before.size(), 12, -2.0f, 2.0f);
  std::vector<float> rows(std::size_t(batch) * h), cols(std::size_t(batch) * w);
  rs::LineScoreParams host;
  host.before = before.data();
  host.after = after.data();
  host.row_scores = rows.data();
  host.col_scores = cols.data();
  host.batch = batch;
  host.channels = c;
  host.height = h;
  host.width = w;
  rs::cpu::line_scores<rs::policies::Cosine>(rs::Host{}, host);
  // Many channels over few pixels (a late ResNet stage): with scratch the
  // channels split into chunks whose partial sums a second pass combines.
  const int cc = 300;
  const auto b2 = ref::random_floats(std::size_t(batch) * cc * h * w, 13, -2.0f, 2.0f);
  const auto a2 = ref::random_floats(b2.size(), 14, -2.0f, 2.0f);
  std::vector<float> rows2(rows.size()), cols2(cols.size());
  rs::LineScoreParams host2 = host;
  host2.before = b2.data();
  host2.after = a2.data();
  host2.row_scores = rows2.data();
  host2.col_scores = cols2.data();
  host2.channels = cc;
  rs::cpu::line_scores<rs::policies::Cosine>(rs::Host{}, host2);
  // Removal: same lines on both paths; then an out-of-range column is zeroed and reported.
  std::vector<int> keep_rows = {0, 1, 2, 4, 5, 7, 9, 11, 12, 1, 2, 3, 4, 6, 8, 9, 10, 12};
  std::vector<int> keep_cols = {0, 2, 3, 5, 6, 8, 10, 0, 1, 2, 4, 5, 7, 9};
  std::vector<float> out(std::size_t(batch) * c * kr * kc);
  rs::RemoveLinesParams r{before.data(), keep_rows.data(), keep_cols.data(), out.data(), batch, c, h, w, kr, kc};
  rs::cpu::remove_lines(rs::Host{}, r);

  REQUIRE_DEVICE();
  auto db = to_device<float>(before), da = to_device<float>(after);
  rs::cuda::DeviceBuffer<float> drows(rows.size()), dcols(cols.size()), pixel(std::size_t(batch) * h * w);
  rs::LineScoreParams dev = host;
  dev.before = db.data();
  dev.after = da.data();
  dev.row_scores = drows.data();
  dev.col_scores = dcols.data();
  dev.pixel_scores = pixel.data();
  rs::cuda::line_scores<rs::policies::Cosine>(rs::Cuda{}, dev);
  EXPECT_LT(ref::max_rel_error(drows.download(), ref::Mat(rows.begin(), rows.end())), 1e-5);
  EXPECT_LT(ref::max_rel_error(dcols.download(), ref::Mat(cols.begin(), cols.end())), 1e-5);
  {
    auto db2 = to_device<float>(b2), da2 = to_device<float>(a2);
    rs::LineScoreParams dev2 = dev;
    dev2.before = db2.data();
    dev2.after = da2.data();
    dev2.channels = cc;
    const std::size_t bytes = rs::cuda::line_scores_scratch_bytes<rs::policies::Cosine>(dev2);
    ASSERT_GT(bytes, 0u) << "300 channels over 286 pixels should split into chunks";
    rs::cuda::DeviceBuffer<unsigned char> partials(bytes);
    dev2.partials = partials.data();
    rs::cuda::line_scores<rs::policies::Cosine>(rs::Cuda{}, dev2);
    EXPECT_LT(ref::max_rel_error(drows.download(), ref::Mat(rows2.begin(), rows2.end())), 1e-5);
    EXPECT_LT(ref::max_rel_error(dcols.download(), ref::Mat(cols2.begin(), cols2.end())), 1e-5);
  }

  auto d_rows = device_copy(keep_rows), d_cols = device_copy(keep_cols), status = device_copy(std::vector<int>(4, 0));
  auto dout = to_device<float>(std::vector<float>(out.size(), NAN));
  rs::RemoveLinesParams rd{db.data(), d_rows.data(), d_cols.data(), dout.data(), batch, c, h, w, kr, kc};
  const rs::Cuda exec{nullptr, status.data()};
  rs::cuda::remove_lines(exec, rd);
  EXPECT_EQ(dout.download(), out);
  EXPECT_NO_THROW(rs::cuda::throw_if_status(exec));
  keep_cols[9] = w;  // sample 1, column slot 2
  d_cols.assign(keep_cols);
  rs::cuda::remove_lines(exec, rd);
  expect_refused([&] { rs::cuda::throw_if_status(exec); }, {"keep_cols[9] = 11"});
}

// ---- SsmScan Block and Vim on CUDA ---------------------------------------------

namespace {

rs::VimConfig tiny_vim() { return fixtures::tiny_vim(16); }  // state 16: Mamba's, the unguarded bucket
using fixtures::lively_vim;

template <class M>
class CudaSsmBlock : public ::testing::Test {};
using SsmImportances = ::testing::Types<rs::policies::L2, rs::policies::Cosine, rs::policies::L1, rs::policies::Random>;
TYPED_TEST_SUITE(CudaSsmBlock, SsmImportances);

}  // namespace

// One bidirectional Vim block: scores, kept indices, output and the class
// token's new position equal the CPU block's.
TYPED_TEST(CudaSsmBlock, MatchesHostBlock) {
  using B = rs::Block<rs::policies::SsmScan, rs::policies::BlockOutput, TypeParam>;
  auto cfg = tiny_vim();
  cfg.depth = 1;
  cfg.dim = 40;
  const auto w = lively_vim(cfg, 7);
  const int batch = 3, tokens = 61, dim = cfg.dim;
  const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 8);
  const std::vector<int> cls_in = {30, 0, 60};
  struct Want {
    int keep;
    std::vector<float> y, scores;
    std::vector<int> keep_idx, cls;
  };
  std::vector<Want> wants;
  rs::Workspace<rs::Host> hws;
  for (int keep : {tokens, 45, 12}) {
    Want h{keep, std::vector<float>(std::size_t(batch) * keep * dim), std::vector<float>(std::size_t(batch) * tokens),
           std::vector<int>(std::size_t(batch) * keep), cls_in};
    auto ha = rs::SsmBlockArgs::dense(x.data(), h.y.data(), batch, tokens);
    ha.keep = keep, ha.scores = h.scores.data(), ha.keep_idx = h.keep_idx.data(), ha.keep_token = h.cls.data();
    ha.seed = 5;
    B::forward(rs::Host{}, w.block(0), ha, hws);
    wants.push_back(std::move(h));
  }

  REQUIRE_DEVICE();
  const rs::cuda::VimDeviceWeights dw(w);
  rs::cuda::Blas blas;
  rs::Workspace<rs::Cuda, float> dws(blas);
  B::reserve(dws, dw.block(0), std::int64_t(batch) * tokens);
  auto dx = to_device<float>(x);
  for (const Want& h : wants) {
    rs::cuda::DeviceBuffer<float> dy(h.y.size()), dscores(h.scores.size());
    rs::cuda::DeviceBuffer<int> didx(h.keep_idx.size());
    auto dcls = device_copy(cls_in);
    auto da = rs::SsmBlockArgs::dense(dx.data(), dy.data(), batch, tokens);
    da.keep = h.keep, da.scores = dscores.data(), da.keep_idx = didx.data(), da.keep_token = dcls.data();
    da.seed = 5;
    B::forward(rs::Cuda{}, dw.block(0), da, dws);

    expect_close(dscores.download(h.scores.size()), h.scores, 2e-5, "scores");
    if (h.keep < tokens) {
      EXPECT_EQ(didx.to_host(h.keep_idx.size()), h.keep_idx) << "keep " << h.keep;
      EXPECT_EQ(dcls.to_host(3), h.cls) << "class-token positions";
    }
    expect_close(dy.download(h.y.size()), h.y, 5e-5, "output");
  }
}

TEST(CudaSsmBlock, BadKeptTokenIsReportedThroughStatus) {
  REQUIRE_DEVICE();
  using B = rs::Block<rs::policies::SsmScan, rs::policies::BlockOutput, rs::policies::L2>;
  auto cfg = tiny_vim();
  cfg.depth = 1;
  const auto w = lively_vim(cfg, 7);
  const rs::cuda::VimDeviceWeights dw(w);
  const int batch = 2, tokens = 17;
  rs::cuda::Blas blas;
  rs::Workspace<rs::Cuda, float> dws(blas);
  B::reserve(dws, dw.block(0), std::int64_t(batch) * tokens);
  auto dx = to_device<float>(ref::random_floats(std::size_t(batch) * tokens * cfg.dim, 1));
  rs::cuda::DeviceBuffer<float> dy(std::size_t(batch) * tokens * cfg.dim);
  auto dcls = device_copy(std::vector<int>{3, 17});  // 17 is past the last token
  auto status = device_copy(std::vector<int>(4, 0));
  auto a = rs::SsmBlockArgs::dense(dx.data(), dy.data(), batch, tokens);
  a.keep = 10;
  a.keep_token = dcls.data();
  const rs::Cuda exec{nullptr, status.data()};
  B::forward(exec, dw.block(0), a, dws);
  expect_refused([&] { rs::cuda::throw_if_status(exec); }, {"keep_token[1] = 17"});
}

// A workspace reserved for fewer rows is refused, not grown (cudaMalloc
// would synchronise the forward path).
TEST(CudaSsmBlock, SmallWorkspaceIsRefused) {
  REQUIRE_DEVICE();
  using B = rs::Block<rs::policies::SsmScan, rs::policies::BlockOutput, rs::policies::L2>;
  auto cfg = tiny_vim();
  cfg.depth = 1;
  const rs::cuda::VimDeviceWeights dw(lively_vim(cfg, 7));
  const int batch = 2, tokens = 17;
  rs::cuda::Blas blas;
  rs::Workspace<rs::Cuda, float> small(blas);
  B::reserve(small, dw.block(0), tokens);
  auto dx = to_device<float>(ref::random_floats(std::size_t(batch) * tokens * cfg.dim, 1));
  rs::cuda::DeviceBuffer<float> dy(std::size_t(batch) * tokens * cfg.dim);
  const auto a = rs::SsmBlockArgs::dense(dx.data(), dy.data(), batch, tokens);
  expect_refused([&] { B::forward(rs::Cuda{}, dw.block(0), a, small); }, {"workspace", "reserve()"});
}

TEST(CudaVisionMamba, MatchesHostModelPrunedAndUnpruned) {
  const auto cfg = tiny_vim();
  const auto w = lively_vim(cfg, 3);
  const int batch = 3;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 4);
  const std::vector<rs::PruneSchedule> schedules = {rs::PruneSchedule::none(),
                                                    rs::PruneSchedule::drop({{1, 0.3}, {2, 0.25}}, 0)};
  rs::VisionMamba<> hmodel(w);
  std::vector<std::vector<float>> want;
  std::vector<rs::VimTrace> trace(schedules.size());
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    want.emplace_back(std::size_t(batch) * cfg.num_classes);
    hmodel.forward(rs::Host{}, images.data(), batch, want.back().data(), schedules[i], &trace[i]);
  }
  ASSERT_FALSE(trace[1].cls_position.empty()) << "the pruned schedule moves the class token";

  REQUIRE_DEVICE();
  rs::cuda::Blas blas;
  rs::cuda::VisionMamba<> dmodel(w, blas);
  dmodel.reserve(batch);
  auto dimages = to_device<float>(images);
  rs::cuda::DeviceBuffer<float> dlogits(std::size_t(batch) * cfg.num_classes);
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    dmodel.forward(rs::Cuda{}, dimages.data(), batch, dlogits.data(), schedules[i]);
    expect_close(dlogits.download(want[i].size()), want[i], 1e-4, "logits");
    if (!trace[i].cls_position.empty())
      EXPECT_EQ(host_copy(dmodel.cls_position(), std::size_t(batch)), trace[i].cls_position.back());
  }
}
