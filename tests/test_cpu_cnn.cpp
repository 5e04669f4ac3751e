// The CnnRows backbone against the naive double ResNet pieces
// (reference_cnn.hpp): line scores for every metric, line removal, the
// bottleneck (identity and projection shortcut, unpruned and line-pruned),
// a small ResNet with the paper-style schedule, and errors.

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <repshift/models/resnet.hpp>

#include "model_fixtures.hpp"
#include "reference_cnn.hpp"
#include "test_support.hpp"

namespace P = rs::policies;

namespace {

struct RandomBottleneck {
  std::vector<float> c1w, c1b, c2w, c2b, c3w, c3b, dw, db;
  rs::BottleneckWeights w;
  RandomBottleneck(int in, int mid, int out, int stride, bool projection, std::uint32_t seed) {
    auto rnd = [&](std::size_t n, float r) { return ref::random_floats(n, seed++, -r, r); };
    c1w = rnd(std::size_t(mid) * in, 0.5f);
    c1b = rnd(std::size_t(mid), 0.2f);
    c2w = rnd(std::size_t(mid) * mid * 9, 0.3f);
    c2b = rnd(std::size_t(mid), 0.2f);
    c3w = rnd(std::size_t(out) * mid, 0.5f);
    c3b = rnd(std::size_t(out), 0.2f);
    w = {in, mid, out, stride, c1w.data(), c1b.data(), c2w.data(), c2b.data(), c3w.data(), c3b.data()};
    if (projection) {
      dw = rnd(std::size_t(out) * in, 0.5f);
      db = rnd(std::size_t(out), 0.2f);
      w.down_weight = dw.data();
      w.down_bias = db.data();
    }
  }
};

}  // namespace

template <class M>
class CnnBlock : public ::testing::Test {};
using CnnMetrics = ::testing::Types<P::L1, P::L2, P::Cosine, P::TokenNorm>;
TYPED_TEST_SUITE(CnnBlock, CnnMetrics);

namespace {

// [B, C, H, W] <-> [B, H, W, C]
std::vector<float> to_nhwc(const std::vector<float>& x, int batch, int c, int h, int w) {
  std::vector<float> out(x.size());
  for (int b = 0; b < batch; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) out[(std::size_t(b) * h * w + i) * c + ch] = x[(std::size_t(b) * c + ch) * h * w + i];
  return out;
}
std::vector<float> to_nchw(const std::vector<float>& x, int batch, int c, int h, int w) {
  std::vector<float> out(x.size());
  for (int b = 0; b < batch; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) out[(std::size_t(b) * c + ch) * h * w + i] = x[(std::size_t(b) * h * w + i) * c + ch];
  return out;
}

using rs::cpu::kHaveOneDnn;

// Identity shortcut, in either layout: output, row / column scores from the
// fused epilogue, and the pruned map (kept lines = the best by the block's
// own scores), against the double reference (NCHW: NHWC maps are
// transposed on the way in and out).
template <class Metric>
void check_block_against_reference(rs::MapLayout layout) {
  using B = rs::Block<P::CnnRows, P::BlockOutput, Metric>;
  const int batch = 2, c = 16, h = 23, w = 29, keep_rows = 17, keep_cols = 20;  // 667 pixels: two epilogue runs
  const RandomBottleneck bw(c, 4, c, 1, false, 10);
  const auto x = ref::random_floats(std::size_t(batch) * c * h * w, 11);
  const ref::Map xd(x.begin(), x.end());
  const ref::Map want = ref::bottleneck(xd, batch, h, w, bw.w);
  const ref::LineScores want_lines = ref::line_scores(ref_metric<Metric>(), want, xd, batch, c, h, w);
  const bool nhwc = layout == rs::MapLayout::Nhwc;
  auto as_nchw = [&](const std::vector<float>& v, int rows, int cols) { return nhwc ? to_nchw(v, batch, c, rows, cols) : v; };

  const auto x_in = nhwc ? to_nhwc(x, batch, c, h, w) : x;
  rs::Workspace<rs::Host> ws;
  std::vector<float> y(x.size(), NAN), rows(std::size_t(batch) * h), cols(std::size_t(batch) * w);
  auto a = rs::CnnBlockArgs::dense(x_in.data(), y.data(), batch, h, w);
  a.layout = layout;
  a.row_scores = rows.data();
  a.col_scores = cols.data();
  B::forward(rs::Host{}, bw.w, a, ws);
  EXPECT_LT(ref::max_rel_error(as_nchw(y, h, w), want), 1e-5);
  EXPECT_LT(ref::max_rel_error(rows, want_lines.rows), 2e-5);
  EXPECT_LT(ref::max_rel_error(cols, want_lines.cols), 2e-5);

  std::vector<float> yp(std::size_t(batch) * c * keep_rows * keep_cols, NAN);
  std::vector<int> kr(std::size_t(batch) * keep_rows), kc(std::size_t(batch) * keep_cols);
  a.y = yp.data();
  a.keep_rows = keep_rows;
  a.keep_cols = keep_cols;
  a.kept_rows = kr.data();
  a.kept_cols = kc.data();
  B::forward(rs::Host{}, bw.w, a, ws);
  EXPECT_EQ(kr, ref::select(rows, batch, h, keep_rows, 0));
  EXPECT_EQ(kc, ref::select(cols, batch, w, keep_cols, 0));
  EXPECT_LT(ref::max_rel_error(as_nchw(yp, keep_rows, keep_cols),
                               ref::remove_lines(want, batch, c, h, w, kr, kc, keep_rows, keep_cols)),
            1e-5);
}

}  // namespace

TYPED_TEST(CnnBlock, ScoresInTheEpilogueAndRemovesLines) {
  check_block_against_reference<TypeParam>(rs::MapLayout::Nchw);
}

// Channels last: oneDNN's convolutions, the same results.
TYPED_TEST(CnnBlock, ChannelsLastMatchesTheReference) {
  if (!kHaveOneDnn) GTEST_SKIP() << "built without oneDNN";
  check_block_against_reference<TypeParam>(rs::MapLayout::Nhwc);
}

TEST(CnnBlock, ChannelsLastProjectionShortcut) {
  if (!kHaveOneDnn) GTEST_SKIP() << "built without oneDNN";
  const int batch = 2, in = 8, out = 16, h = 9, w = 9;
  const RandomBottleneck bw(in, 4, out, 2, true, 20);
  const auto x = ref::random_floats(std::size_t(batch) * in * h * w, 21);
  const ref::Map want = ref::bottleneck(ref::Map(x.begin(), x.end()), batch, h, w, bw.w);
  const auto x_nhwc = to_nhwc(x, batch, in, h, w);
  std::vector<float> y(want.size(), NAN);
  rs::Workspace<rs::Host> ws;
  auto a = rs::CnnBlockArgs::dense(x_nhwc.data(), y.data(), batch, h, w);
  a.layout = rs::MapLayout::Nhwc;
  rs::Block<P::CnnRows, P::BlockOutput, P::L2>::forward(rs::Host{}, bw.w, a, ws);
  EXPECT_LT(ref::max_rel_error(to_nchw(y, batch, out, 5, 5), want), 1e-5);
}

TEST(CnnBlock, ProjectionShortcutAndItsLimits) {
  const int batch = 2, in = 8, out = 16, h = 9, w = 9;
  const RandomBottleneck bw(in, 4, out, 2, true, 20);
  const auto x = ref::random_floats(std::size_t(batch) * in * h * w, 21);
  const ref::Map want = ref::bottleneck(ref::Map(x.begin(), x.end()), batch, h, w, bw.w);
  std::vector<float> y(want.size(), NAN);
  rs::Workspace<rs::Host> ws;
  auto a = rs::CnnBlockArgs::dense(x.data(), y.data(), batch, h, w);
  using B = rs::Block<P::CnnRows, P::BlockOutput, P::L2>;
  B::forward(rs::Host{}, bw.w, a, ws);
  EXPECT_LT(ref::max_rel_error(y, want), 1e-5);
  // x [8, 9, 9] and y [16, 5, 5] have no per-pixel shift.
  a.keep_rows = 4;
  expect_refused([&] { B::forward(rs::Host{}, bw.w, a, ws); }, {"projects its shortcut"});
  RandomBottleneck no_down(in, 4, out, 1, false, 22);
  a.keep_rows = 0;
  EXPECT_THROW(B::forward(rs::Host{}, no_down.w, a, ws), rs::InvalidArgument);  // 8 -> 16 channels needs a projection
  // Channel counts bounded before any product of them is taken.
  auto huge = bw.w;
  huge.mid_channels = INT64_C(1) << 62;
  expect_refused([&] { B::forward(rs::Host{}, huge, a, ws); }, {"weights.mid_channels = 4611686018427387904 exceeds 2^29"});
  // y must not overlap x: an identity block with y one float into x.
  const RandomBottleneck same(in, 4, in, 1, false, 23);
  std::vector<float> xy(x.size() + 1);
  expect_refused([&] { B::forward(rs::Host{}, same.w, rs::CnnBlockArgs::dense(xy.data(), xy.data() + 1, batch, h, w), ws); },
                 {"y must not alias x", "(y - x = 4 bytes)"});
  // More rows kept than the output has, on a block that can prune (the
  // projecting one above refuses any keep_rows for another reason).
  std::vector<float> ys(x.size(), NAN);
  auto over = rs::CnnBlockArgs::dense(x.data(), ys.data(), batch, h, w);
  over.keep_rows = h + 1;
  expect_refused([&] { B::forward(rs::Host{}, same.w, over, ws); }, {"keep_rows = 10 must be <= output height = 9"});
}

// reserve() holds all a forward of that size asks for (CUDA refuses more).
TEST(CnnBlock, ReserveCoversPrunedAndProjectedForwards) {
  using B = rs::Block<P::CnnRows, P::BlockOutput, P::Cosine>;
  const int batch = 2, c = 16, h = 11, w = 13;
  const RandomBottleneck identity(c, 4, c, 1, false, 40), projected(8, 4, c, 2, true, 41);
  const auto x = ref::random_floats(std::size_t(batch) * c * h * w, 42);
  std::vector<float> y(x.size());
  rs::Workspace<rs::Host> ws;
  B::reserve(ws, identity.w, batch, h, w);
  B::reserve(ws, projected.w, batch, h, w);
  const rs::WorkspaceExtent held = ws.held();
  auto a = rs::CnnBlockArgs::dense(x.data(), y.data(), batch, h, w);
  a.keep_rows = 7;
  a.keep_cols = 9;
  B::forward(rs::Host{}, identity.w, a, ws);
  B::forward(rs::Host{}, projected.w, rs::CnnBlockArgs::dense(x.data(), y.data(), batch, h, w), ws);
  EXPECT_EQ(ws.held().values, held.values);
  EXPECT_EQ(ws.held().floats, held.floats);
  EXPECT_EQ(ws.held().ints, held.ints);
}

TEST(LineScores, StandaloneKernelAndRemoveLinesErrors) {
  const int batch = 3, c = 5, h = 7, w = 4;
  const auto before = ref::random_floats(std::size_t(batch) * c * h * w, 30);
  const auto after = ref::random_floats(before.size(), 31);
  std::vector<float> rows(std::size_t(batch) * h), cols(std::size_t(batch) * w);
  rs::LineScoreParams p;
  p.before = before.data();
  p.after = after.data();
  p.row_scores = rows.data();
  p.col_scores = cols.data();
  p.batch = batch;
  p.channels = c;
  p.height = h;
  p.width = w;
  rs::cpu::line_scores<P::Cosine>(rs::Host{}, p);
  const auto want = ref::line_scores(ref::Metric::Cosine, ref::Map(after.begin(), after.end()),
                                     ref::Map(before.begin(), before.end()), batch, c, h, w);
  EXPECT_LT(ref::max_rel_error(rows, want.rows), 1e-6);
  EXPECT_LT(ref::max_rel_error(cols, want.cols), 1e-6);

  std::vector<int> kr = {0, 2, 0, 1, 5, 6}, kc = {1, 3, 0, 3, 2, 4};  // sample 2's column 4 is out of range
  std::vector<float> out(std::size_t(batch) * c * 2 * 2);
  rs::RemoveLinesParams r{before.data(), kr.data(), kc.data(), out.data(), batch, c, h, w, 2, 2};
  expect_refused([&] { rs::cpu::remove_lines(rs::Host{}, r); }, {"keep_cols[5] = 4 is outside [0, 4)"});
  // batch x channels overflows before the map's extent is taken.
  rs::LineScoreParams huge = p;
  huge.batch = INT64_C(1) << 33;
  huge.channels = INT64_C(1) << 31;
  huge.height = INT64_C(1) << 31;
  expect_refused([&] { rs::cpu::line_scores<P::L2>(rs::Host{}, huge); }, {"feature map", "overflows"});
}

using fixtures::tiny_resnet;

class ResNetLayouts : public ::testing::TestWithParam<rs::MapLayout> {};
INSTANTIATE_TEST_SUITE_P(Both, ResNetLayouts, ::testing::Values(rs::MapLayout::Nchw, rs::MapLayout::Nhwc),
                         [](const auto& info) { return info.param == rs::MapLayout::Nhwc ? "Nhwc" : "Nchw"; });

TEST_P(ResNetLayouts, LinePrunedForwardMatchesTheReference) {
  if (GetParam() == rs::MapLayout::Nhwc && !kHaveOneDnn) GTEST_SKIP() << "built without oneDNN";
  const rs::ResNetConfig cfg = tiny_resnet();
  const rs::ResNetWeights w = rs::ResNetWeights::random(cfg, 5);
  rs::ResNet<> model(w);
  model.set_layout(GetParam());
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 6);
  std::vector<float> logits(std::size_t(batch) * 10);
  rs::ResNetTrace trace;
  model.forward(rs::Host{}, images.data(), batch, logits.data(), rs::LinePruneSchedule::none(), &trace);
  EXPECT_EQ(trace.sizes, (std::vector<int>{8, 8, 4, 2, 1}));  // entering each stage, then the last
  EXPECT_LT(ref::max_rel_error(logits, ref::resnet(w, images, batch, {}, {}, {})), 1e-5);

  const rs::LinePruneSchedule schedule{{{1, 2, 2}, {2, 1, 1}}};  // 8 -> 6 after stage 1; 3 -> 2 after stage 2
  model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);
  EXPECT_EQ(trace.sizes, (std::vector<int>{8, 6, 2, 1, 1}));
  ASSERT_EQ(trace.kept_rows.size(), 2u);
  std::vector<ref::LineScores> line_scores;
  EXPECT_LT(ref::max_rel_error(logits, ref::resnet(w, images, batch, schedule, trace.kept_rows, trace.kept_cols,
                                                   &line_scores)),
            1e-5);
  // The lines kept are the reference's best: every kept line scores at
  // least as high as every removed one (up to float rounding), ascending.
  ASSERT_EQ(line_scores.size(), 2u);
  for (std::size_t step = 0; step < 2; ++step) {
    // Square maps: the stage's output had sizes[stage] + rows lines (rows = cols here).
    const auto& st = schedule.steps[step];
    const int keep = trace.sizes[std::size_t(st.stage)], size = keep + st.rows;
    ASSERT_EQ(st.rows, st.cols);
    for (const bool by_rows : {true, false}) {
      const std::vector<int>& kept = by_rows ? trace.kept_rows[step] : trace.kept_cols[step];
      const std::vector<double>& score = by_rows ? line_scores[step].rows : line_scores[step].cols;
      ASSERT_EQ(kept.size(), std::size_t(batch * keep));
      for (int b = 0; b < batch; ++b) {
        const int* idx = kept.data() + std::size_t(b) * keep;
        EXPECT_TRUE(std::is_sorted(idx, idx + keep));
        EXPECT_TRUE(kept_is_top(idx, keep, score.data() + std::size_t(b) * size, size))
            << "step " << step << (by_rows ? " rows" : " columns") << ", image " << b;
      }
    }
  }

  EXPECT_THROW(model.forward(rs::Host{}, images.data(), batch, logits.data(), rs::LinePruneSchedule{{{1, 8, 8}}}),
               rs::InvalidArgument);  // removes every line
  EXPECT_THROW(model.forward(rs::Host{}, images.data(), batch, logits.data(), rs::LinePruneSchedule{{{5, 1, 1}}}),
               rs::InvalidArgument);
  // Refused before any work: the trace is left as it was.
  const auto refused = [&](const rs::LinePruneSchedule& bad, const std::string& part) {
    rs::ResNetTrace untouched;
    untouched.sizes = {42};
    try {
      model.forward(rs::Host{}, images.data(), batch, logits.data(), bad, &untouched);
      ADD_FAILURE() << "no exception; expected one naming " << part;
    } catch (const rs::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
    EXPECT_EQ(untouched.sizes, std::vector<int>{42});
  };
  refused(rs::LinePruneSchedule{{{1, 2, 2}, {1, 1, 1}}}, "two steps for stage 1");
  // BatchNorm folds scale = gamma / sqrt(var + eps): eps 0 would make a zero variance infinite.
  auto no_eps = cfg;
  no_eps.bn_eps = 0.0f;
  expect_refused([&] { rs::ResNetWeights::random(no_eps, 1); }, {"config.bn_eps = 0 must be finite and > 0"});
  // An integer cast to MapLayout names no layout: refused, not run as NCHW.
  expect_refused([&] { model.set_layout(static_cast<rs::MapLayout>(7)); },
                 {"ResNet::set_layout", "layout = 7 is neither MapLayout::Nchw nor MapLayout::Nhwc"});
  refused(rs::LinePruneSchedule{{{1, 2, 2}, {4, 1, 1}}}, "removes 1 of 1 lines after stage 4");
  // tiny_resnet's stage 3 is one bottleneck that projects its shortcut.
  refused(rs::LinePruneSchedule{{{3, 1, 1}}}, "the step after stage 3 prunes, but that stage's last block projects");
}

// A NaN pixel reaches the logits unpruned, as in torchvision (ReLU and the
// max pool keep NaN). The NHWC path runs oneDNN's ReLU and pooling, which
// do not promise NaN propagation, so only the NCHW path is held to it.
TEST(ResNetNaN, PropagatesToTheLogitsOnTheNchwPath) {
  const rs::ResNetConfig cfg = tiny_resnet();
  rs::ResNet<> model(rs::ResNetWeights::random(cfg, 5));
  model.set_layout(rs::MapLayout::Nchw);
  auto images = ref::random_floats(std::size_t(3) * 32 * 32, 6);
  images[5 * 32 + 7] = NAN;
  std::vector<float> logits(10);
  model.forward(rs::Host{}, images.data(), 1, logits.data());
  for (float l : logits) EXPECT_TRUE(std::isnan(l)) << l;
}

// Both max pools keep a NaN that enters a window, as torch's max_pool2d
// (the channels-last one returned the window's largest number). One
// channel: the NCHW and NHWC maps are the same memory.
TEST(MaxPool, NaNWinsOnBothLayouts) {
  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i) x[std::size_t(i)] = float(i);
  x[0] = NAN;  // only in the first 3x3 stride-2 window of the 2x2 output
  for (rs::MapLayout layout : {rs::MapLayout::Nchw, rs::MapLayout::Nhwc}) {
    std::vector<float> out(4, 0.0f);
    rs::Backend<rs::Host>::max_pool_3x3s2(rs::Host{}, layout, x.data(), 1, 1, 4, 4, out.data());
    EXPECT_TRUE(std::isnan(out[0])) << out[0];
    EXPECT_EQ(out[1], 7.0f);   // rows 0-1, columns 1-3
    EXPECT_EQ(out[2], 13.0f);  // rows 1-3, columns 0-1
    EXPECT_EQ(out[3], 15.0f);
  }
}

// The im2col product runs on a BLAS with int sizes: a map whose output
// pixels (or a patch) pass INT_MAX is refused by name, before any scratch
// is allocated or any pixel read.
TEST(Conv2d, SizesPastTheBlasIntAreRefused) {
  const float dummy = 0.0f;
  std::vector<float> cols;
  rs::Conv2dShape pointwise;
  pointwise.in_channels = pointwise.out_channels = 1;
  expect_refused([&] {
    rs::cpu::conv2d<rs::ConvEpilogue::None>(rs::Host{}, pointwise, &dummy, 1, 46341, 46341, &dummy, nullptr,
                                            const_cast<float*>(&dummy), cols);
  }, {"conv2d", "output pixels (Ho x Wo) = 2147488281"});
  rs::Conv2dShape wide;
  wide.in_channels = 1 << 28;
  wide.out_channels = 1;
  wide.kernel = 3;
  expect_refused([&] {
    rs::cpu::conv2d<rs::ConvEpilogue::None>(rs::Host{}, wide, &dummy, 1, 3, 3, &dummy, nullptr,
                                            const_cast<float*>(&dummy), cols);
  }, {"conv2d", "patch (in_channels x kernel^2) = 2415919104"});
  EXPECT_TRUE(cols.empty());
}
