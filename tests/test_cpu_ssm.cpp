// The SsmScan backbone against the naive double Mamba / Vim
// (reference_ssm.hpp): math approximations, causal conv, selective scan in
// both directions (on every vector copy, cpu_targets()), the block for every metric (unpruned, pruned with a
// middle class token), the Vim model, weights round trip, and errors.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include <unistd.h>  // getpid

#include <repshift/models/vim.hpp>

#include "model_fixtures.hpp"
#include "reference_ssm.hpp"
#include "test_support.hpp"

namespace P = rs::policies;

namespace {

// Owning random weights of one block; `spread` scales the projections so
// the mixer changes tokens visibly.
struct RandomSsmWeights {
  rs::SsmBlockTensors t;
  int dim, inner, state, dt_rank, kernel;
  RandomSsmWeights(int dim_, int inner_, int state_, int dt_rank_, bool bidirectional, std::uint32_t seed)
      : dim(dim_), inner(inner_), state(state_), dt_rank(dt_rank_), kernel(4) {
    auto rnd = [&](std::size_t n, float lo, float hi) { return ref::random_floats(n, seed++, lo, hi); };
    t.norm_w = rnd(std::size_t(dim), 0.8f, 1.2f);
    t.in_proj_w = rnd(std::size_t(2 * inner * dim), -0.4f, 0.4f);
    t.out_proj_w = rnd(std::size_t(dim * inner), -0.3f, 0.3f);
    for (int dir = 0; dir < (bidirectional ? 2 : 1); ++dir) {
      auto& b = dir == 0 ? t.fwd : t.bwd;
      b.conv_w = rnd(std::size_t(inner * kernel), -0.5f, 0.5f);
      b.conv_b = rnd(std::size_t(inner), -0.2f, 0.2f);
      b.x_proj_w = rnd(std::size_t((dt_rank + 2 * state) * inner), -0.3f, 0.3f);
      b.dt_proj_w = rnd(std::size_t(inner * dt_rank), -0.5f, 0.5f);
      b.dt_proj_b = rnd(std::size_t(inner), -3.0f, -1.0f);
      b.A_log = rnd(std::size_t(inner * state), -1.0f, 2.0f);
      b.D = rnd(std::size_t(inner), 0.5f, 1.5f);
    }
  }
  rs::SsmBlockWeights view() const { return t.view(dim, inner, state, dt_rank, kernel, 1e-5f); }
};

}  // namespace

TEST(SsmMath, LogSoftplusSiluMatchTheLibm) {
  double worst_log = 0, worst_softplus = 0, worst_silu = 0;
  for (double v = -30; v <= 30; v += 0.0137) {
    const float x = float(v);
    const float pos = float(std::exp(v / 3));
    worst_log = ref::worse(worst_log, std::abs(rs::cpu::log_approx(pos) - std::log(double(pos))) / (1 + std::abs(std::log(double(pos)))));
    worst_softplus = ref::worse(worst_softplus, std::abs(rs::cpu::softplus(x) - ref::softplus(x)) / (1e-30 + ref::softplus(x)));
    worst_silu = ref::worse(worst_silu, std::abs(rs::cpu::silu(x) - ref::silu(x)) / (1 + std::abs(ref::silu(x))));
#if !defined(REPSHIFT_TEST_FAST_MATH)  // reassociation may order the two forms differently
    // The vector forms run the same arithmetic lane by lane.
    const rs::cpu::vfloat xv = rs::cpu::broadcast<rs::cpu::vfloat>(x);
    ASSERT_EQ(rs::cpu::softplus(xv)[0], rs::cpu::softplus(x));
    ASSERT_EQ(rs::cpu::log_approx(rs::cpu::broadcast<rs::cpu::vfloat>(pos))[0], rs::cpu::log_approx(pos));
#endif
  }
  EXPECT_LT(worst_log, 3e-7);
  EXPECT_LT(worst_softplus, 2e-6);  // relative, down to softplus(-30) ~ 1e-13
  EXPECT_LT(worst_silu, 3e-7);
}

struct ScanCase {
  int batch, length, channels, state;
};

class SelectiveScan : public ::testing::TestWithParam<ScanCase> {};

TEST_P(SelectiveScan, BothDirectionsMatchTheSequentialReference) {
  const ScanCase k = GetParam();
  const std::size_t rows = std::size_t(k.batch) * k.length;
  const int d = k.channels, n = k.state, wide = 2 * d;  // u and z interleaved in one row, as in_proj writes them
  const auto uz = ref::random_floats(rows * wide, 1, -2.0f, 2.0f);
  const auto dt = ref::random_floats(rows * d, 2, -4.0f, 1.0f);
  const auto bc = ref::random_floats(rows * 2 * n, 3, -1.0f, 1.0f);
  const auto dt_bias = ref::random_floats(std::size_t(d), 4, -1.0f, 0.0f);
  const auto A_log = ref::random_floats(std::size_t(d) * n, 5, -1.0f, 2.0f);
  const auto D = ref::random_floats(std::size_t(d), 6, 0.0f, 1.0f);

  ref::Mat u(rows * d), z(rows * d), B(rows * n), C(rows * n);
  for (std::size_t r = 0; r < rows; ++r) {
    for (int i = 0; i < d; ++i) u[r * d + i] = uz[r * wide + i], z[r * d + i] = uz[r * wide + d + i];
    for (int i = 0; i < n; ++i) B[r * n + i] = bc[r * 2 * n + i], C[r * n + i] = bc[r * 2 * n + n + i];
  }
  const ref::Mat dtd(dt.begin(), dt.end());
  const ref::Mat fwd = ref::scan(u, dtd, dt_bias.data(), A_log.data(), B, C, D.data(), &z, k.batch, k.length, d, n);
  const auto flip = [&](const ref::Mat& m, int w) { return ref::flip(m, k.batch, k.length, w); };
  const ref::Mat bwd = flip(ref::scan(flip(u, d), flip(dtd, d), dt_bias.data(), A_log.data(), flip(B, n), flip(C, n),
                                      D.data(), nullptr, k.batch, k.length, d, n), d);

  rs::SelectiveScanParams p;
  p.u = uz.data();
  p.u_stride = wide;
  p.dt = dt.data();
  p.dt_stride = d;
  p.dt_bias = dt_bias.data();
  p.A_log = A_log.data();
  p.B = bc.data();
  p.C = bc.data() + n;
  p.bc_stride = 2 * n;
  p.D = D.data();
  p.z = uz.data() + d;
  p.z_stride = wide;
  std::vector<float> out(rows * d, NAN);
  p.out = out.data();
  p.out_stride = d;
  p.batch = k.batch;
  p.length = k.length;
  p.channels = d;
  p.state = n;
  ref::Mat want(rows * d);
  for (std::size_t i = 0; i < want.size(); ++i) want[i] = 1.0 + 0.5 * bwd[i];
  for (const auto isa : cpu_targets()) {
    SCOPED_TRACE(rs::cpu::to_string(isa));
    p.z = uz.data() + d;
    p.out_scale = 1.0f;
    std::fill(out.begin(), out.end(), NAN);
    p.out = out.data();
    rs::cpu::selective_scan<rs::ScanDirection::Forward>(rs::Host{}, p, isa);
    EXPECT_LT(ref::max_rel_error(out, fwd), 2e-5);

    // Backward, ungated, accumulated onto what is there and scaled.
    p.z = nullptr;
    p.out_scale = 0.5f;
    std::vector<float> acc(rows * d, 1.0f);
    p.out = acc.data();
    rs::cpu::selective_scan<rs::ScanDirection::Backward, true>(rs::Host{}, p, isa);
    EXPECT_LT(ref::max_rel_error(acc, want), 2e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SelectiveScan,
                         ::testing::Values(ScanCase{2, 197, 64, 16}, ScanCase{1, 33, 37, 16}, ScanCase{3, 9, 5, 5},
                                           ScanCase{1, 1, 16, 64}),
                         [](const auto& info) {
                           const ScanCase& k = info.param;
                           return "B" + std::to_string(k.batch) + "L" + std::to_string(k.length) + "D" +
                                  std::to_string(k.channels) + "N" + std::to_string(k.state);
                         });

TEST(CausalConv, ForwardIsCausalAndBackwardMirrorsIt) {
  const int batch = 2, length = 11, d = 21, k = 4;
  const auto x = ref::random_floats(std::size_t(batch) * length * d, 7);
  const auto w = ref::random_floats(std::size_t(d) * k, 8);
  const auto bias = ref::random_floats(std::size_t(d), 9);
  rs::CausalConvParams p;
  p.x = x.data();
  p.x_stride = d;
  p.weight = w.data();
  p.bias = bias.data();
  p.batch = batch;
  p.length = length;
  p.channels = d;
  p.kernel = k;
  p.out_stride = d;
  const ref::Mat xd(x.begin(), x.end());
  const ref::Mat want_fwd = ref::conv_silu(xd, batch, length, d, w.data(), bias.data(), k);
  const ref::Mat want_bwd =
      ref::flip(ref::conv_silu(ref::flip(xd, batch, length, d), batch, length, d, w.data(), bias.data(), k), batch,
                length, d);
  for (const auto isa : cpu_targets()) {
    SCOPED_TRACE(rs::cpu::to_string(isa));
    std::vector<float> fwd(x.size(), NAN), bwd(x.size(), NAN);
    p.out = fwd.data();
    rs::cpu::causal_conv1d_silu<rs::ScanDirection::Forward>(rs::Host{}, p, isa);
    p.out = bwd.data();
    rs::cpu::causal_conv1d_silu<rs::ScanDirection::Backward>(rs::Host{}, p, isa);
    EXPECT_LT(ref::max_rel_error(fwd, want_fwd), 1e-6);
    EXPECT_LT(ref::max_rel_error(bwd, want_bwd), 1e-6);
  }
}

template <class M>
class SsmBlock : public ::testing::Test {};
using SsmMetrics = ::testing::Types<P::L1, P::L2, P::Cosine, P::TokenNorm>;
TYPED_TEST_SUITE(SsmBlock, SsmMetrics);

TYPED_TEST(SsmBlock, OutputScoresAndOrderPreservingPruneWithAMiddleClassToken) {
  using Metric = TypeParam;
  using B = rs::Block<P::SsmScan, P::BlockOutput, Metric>;
  const int batch = 2, tokens = 23, dim = 24, keep = 14;
  for (bool bidirectional : {true, false}) {
    const RandomSsmWeights w(dim, 48, 16, 3, bidirectional, 40);
    const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 41);
    const ref::Mat xd(x.begin(), x.end());
    const ref::SsmResult want = ref::ssm_block(xd, batch, tokens, w.view(), ref_metric<Metric>());

    rs::Workspace<rs::Host> ws;
    std::vector<float> y(x.size(), NAN), scores(std::size_t(batch) * tokens);
    auto a = rs::SsmBlockArgs::dense(x.data(), y.data(), batch, tokens);
    a.scores = scores.data();
    B::forward(rs::Host{}, w.view(), a, ws);
    EXPECT_LT(ref::max_rel_error(y, want.y), 2e-5) << "bidirectional " << bidirectional;
    EXPECT_LT(ref::max_rel_error(scores, want.scores), 2e-5);

    // Pruned, class token at 11 in sample 0 and 3 in sample 1: it survives
    // even where its score is low, order is kept, its new place reported.
    std::vector<float> yp(std::size_t(batch) * keep * dim, NAN);
    std::vector<int> keep_idx(std::size_t(batch) * keep), cls = {11, 3};
    a.y = yp.data();
    a.keep = keep;
    a.keep_idx = keep_idx.data();
    a.keep_token = cls.data();
    B::forward(rs::Host{}, w.view(), a, ws);
    std::vector<float> ranked(scores);
    ranked[11] = ranked[std::size_t(tokens) + 3] = INFINITY;
    EXPECT_EQ(keep_idx, ref::select(ranked, batch, tokens, keep, 0));
    EXPECT_LT(ref::max_rel_error(yp, ref::gather_rows(want.y, batch, tokens, dim, keep_idx, keep)), 2e-5);
    for (int b = 0; b < batch; ++b) EXPECT_EQ(keep_idx[std::size_t(b * keep + cls[std::size_t(b)])], b == 0 ? 11 : 3);
    EXPECT_FALSE(std::isinf(scores[11])) << "the caller's scores stay the computed ones";
  }
}

namespace {

using fixtures::lively_vim;
using fixtures::tiny_vim;

}  // namespace

TEST(VisionMamba, UnprunedAndPrunedMatchTheReference) {
  const rs::VimConfig cfg = tiny_vim();
  const rs::VimWeights w = lively_vim(cfg, 3);
  rs::VisionMamba<> model(w);
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 4);
  std::vector<float> logits(std::size_t(batch) * 10);
  model.forward(rs::Host{}, images.data(), batch, logits.data());
  EXPECT_LT(ref::max_rel_error(logits, ref::vim(w, images, batch, {}, {})), 1e-4);

  const auto schedule = rs::PruneSchedule::drop({{1, 0.3}, {2, 0.25}}, 0);
  rs::VimTrace trace;
  model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);
  EXPECT_EQ(trace.tokens, (std::vector<int>{17, 17, 12, 9, 9}));  // 17 - floor(0.3 * 17), 12 - floor(0.25 * 12)
  std::vector<std::vector<int>> want_cls;
  std::vector<std::vector<double>> want_scores;
  const ref::Mat want = ref::vim(w, images, batch, {1, 2}, trace.keep_idx, &want_cls, &want_scores);
  EXPECT_EQ(trace.cls_position, want_cls);
  // The tokens kept are the reference's best by shift (up to float
  // rounding), beside the class token, which is always kept.
  ASSERT_EQ(want_scores.size(), 2u);
  for (std::size_t k = 0; k < 2; ++k) {
    const std::size_t layer = k + 1;  // the schedule's layers 1 and 2
    const int in = trace.tokens[layer], keep = trace.tokens[layer + 1];
    for (int b = 0; b < batch; ++b) {
      const int* idx = trace.keep_idx[k].data() + std::size_t(b) * keep;
      const int cls = k == 0 ? cfg.cls_index() : want_cls[0][std::size_t(b)];
      EXPECT_NE(std::find(idx, idx + keep, cls), idx + keep) << "layer " << layer << ", image " << b;
      EXPECT_TRUE(kept_is_top(idx, keep, want_scores[k].data() + std::size_t(b) * in, in, cls))
          << "layer " << layer << ", image " << b;
    }
  }
  for (const auto& per_layer : want_cls)
    for (int pos : per_layer) EXPECT_GE(pos, 0) << "the class token was dropped";
  EXPECT_LT(ref::max_rel_error(logits, want), 1e-4);

  // Left at its default (kModelPrefix), protect is 0 for Vim: the class
  // token is followed wherever it is, and the first patch gets no pass.
  std::vector<float> by_default(logits.size());
  rs::VimTrace default_trace;
  model.forward(rs::Host{}, images.data(), batch, by_default.data(), rs::PruneSchedule::drop({{1, 0.3}, {2, 0.25}}),
                &default_trace);
  EXPECT_EQ(by_default, logits);
  EXPECT_EQ(default_trace.keep_idx, trace.keep_idx);
  // ... which is not protect = 1: that keeps token 0 at both layers, where
  // the unprotected run drops it in some sample.
  rs::VimTrace protected_trace;
  model.forward(rs::Host{}, images.data(), batch, by_default.data(), rs::PruneSchedule::drop({{1, 0.3}, {2, 0.25}}, 1),
                &protected_trace);
  EXPECT_NE(protected_trace.keep_idx, trace.keep_idx);
  // A layer that cannot keep the class token and the protected prefix is
  // refused before any layer runs (the trace is never started).
  rs::VimTrace untouched;
  untouched.tokens = {-1};
  expect_refused([&] {
    model.forward(rs::Host{}, images.data(), batch, logits.data(), rs::PruneSchedule::counts({{2, 5}}, 5), &untouched);
  }, {"keeps 5 tokens at layer 2", "schedule.protect = 5"});
  EXPECT_EQ(untouched.tokens, std::vector<int>{-1});
}

// A class token inside the protected prefix is protected already: a layer
// may keep it alone, and a prefix as long as the sequence prunes nothing
// (both were refused as wanting a slot for the class token besides it).
TEST(VisionMamba, ClassTokenInsideThePrefixNeedsNoSlotOfItsOwn) {
  rs::VimConfig cfg = tiny_vim();
  cfg.cls_position = 0;
  const rs::VimWeights w = lively_vim(cfg, 5);
  rs::VisionMamba<> model(w);
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 6);
  std::vector<float> logits(std::size_t(batch) * 10, NAN);
  rs::VimTrace trace;
  model.forward(rs::Host{}, images.data(), batch, logits.data(), rs::PruneSchedule::counts({{1, 1}}, 1), &trace);
  EXPECT_EQ(trace.tokens, (std::vector<int>{17, 17, 1, 1, 1}));
  EXPECT_EQ(trace.keep_idx, (std::vector<std::vector<int>>{{0, 0}}));
  EXPECT_EQ(trace.cls_position, (std::vector<std::vector<int>>{{0, 0}}));
  EXPECT_LT(ref::max_rel_error(logits, ref::vim(w, images, batch, {1}, trace.keep_idx)), 1e-4);
  std::vector<float> unpruned(logits.size(), NAN), whole_prefix(logits.size(), NAN);
  model.forward(rs::Host{}, images.data(), batch, unpruned.data());
  model.forward(rs::Host{}, images.data(), batch, whole_prefix.data(), rs::PruneSchedule::none(17));
  EXPECT_LT(ref::max_rel_error(unpruned, ref::vim(w, images, batch, {}, {})), 1e-4);
  EXPECT_EQ(whole_prefix, unpruned);
  // Outside the prefix the class token still needs its slot.
  cfg.cls_position = 8;
  rs::VisionMamba<> middle(lively_vim(cfg, 5));
  expect_refused([&] { middle.forward(rs::Host{}, images.data(), batch, logits.data(),
                                      rs::PruneSchedule::counts({{1, 1}}, 1)); },
                 {"keeps 1 tokens at layer 1, fewer than the class token and schedule.protect = 1"});
}

TEST(VisionMamba, WeightsRoundTripThroughSafetensors) {
  const rs::VimConfig cfg = tiny_vim();
  const rs::VimWeights w = rs::VimWeights::random(cfg, 9);
  // One file per process: this test runs in four binaries (test_cpu_ssm and the
  // baseline, avx2 and fast_math variants) that ctest -j may run at once.
  const std::string path = testing::TempDir() + "vim_tiny_test_" + std::to_string(getpid()) + ".safetensors";
  w.save(path);
  const rs::VimWeights back = rs::VimWeights::load(cfg, rs::io::SafeTensorsFile(path));
  std::remove(path.c_str());
  EXPECT_EQ(back.layers[2].bwd.A_log, w.layers[2].bwd.A_log);
  EXPECT_EQ(back.head_w, w.head_w);
  EXPECT_EQ(back.pos_embed, w.pos_embed);
  // Mamba's init: A = -(n + 1) per state, D = 1.
  EXPECT_FLOAT_EQ(w.layers[0].fwd.A_log[3], std::log(4.0f));
  EXPECT_EQ(w.layers[0].fwd.D[5], 1.0f);
}

TEST(SsmErrors, NameTheArgument) {
  const RandomSsmWeights w(8, 16, 4, 2, true, 50);
  const auto x = ref::random_floats(std::size_t(10) * 8, 51);
  std::vector<float> y(x.size());
  rs::Workspace<rs::Host> ws;
  auto expect_message = [&](const rs::SsmBlockArgs& a, const char* fragment) {
    expect_refused([&] { rs::Block<P::SsmScan, P::BlockOutput, P::L2>::forward(rs::Host{}, w.view(), a, ws); }, {fragment});
  };
  int cls = 10;
  auto a = rs::SsmBlockArgs::dense(x.data(), y.data(), 1, 10);
  a.keep_token = &cls;
  expect_message(a, "keep_token[0] = 10 is outside [0, tokens = 10)");
  a = rs::SsmBlockArgs::dense(x.data(), const_cast<float*>(x.data()), 1, 10);
  expect_message(a, "y must not alias x");
  // Any overlap, not only y == x: y one row into x.
  std::vector<float> xy(std::size_t(11) * 8);
  a = rs::SsmBlockArgs::dense(xy.data(), xy.data() + 8, 1, 10);
  expect_message(a, "y must not alias x: y's 320 bytes overlap x's 320 bytes (y - x = 32 bytes)");
  a = rs::SsmBlockArgs::dense(x.data(), y.data(), 1, 10);
  // The kept token needs a slot beside the protected ones only where tokens
  // are dropped: with nothing dropped, protect = keep = tokens is taken.
  int kept = 2;
  a.keep_token = &kept;
  a.protect = a.keep = 10;
  rs::Block<P::SsmScan, P::BlockOutput, P::L2>::forward(rs::Host{}, w.view(), a, ws);
  EXPECT_EQ(kept, 2);
  a.protect = a.keep = 3;
  expect_message(a, "protect + 1 (keep_token) = 4");
  a = rs::SsmBlockArgs::dense(x.data(), y.data(), 1, 10);
  // The second (Vim) branch's weights are checked like the first's.
  auto missing = w.view();
  missing.backward.x_proj_weight = nullptr;
  expect_refused([&] { rs::Block<P::SsmScan, P::BlockOutput, P::L2>::forward(rs::Host{}, missing, a, ws); },
                 {"weights.backward.x_proj_weight is a null pointer"});
  // Sizes are bounded before any product of them is taken.
  auto huge = w.view();
  huge.inner = INT64_C(1) << 62;
  expect_refused([&] { rs::Block<P::SsmScan, P::BlockOutput, P::L2>::forward(rs::Host{}, huge, a, ws); },
                 {"weights.inner = 4611686018427387904 exceeds 2^29"});
  huge = w.view();
  huge.state = 65;
  expect_refused([&] { rs::Block<P::SsmScan, P::BlockOutput, P::L2>::forward(rs::Host{}, huge, a, ws); },
                 {"weights.state = 65 must be <= SelectiveScanParams::kMaxState = 64"});
  a = rs::SsmBlockArgs::dense(x.data(), y.data(), 1, 10);
  a.keep = 11;
  expect_message(a, "keep");
  rs::VimConfig bad = tiny_vim();
  bad.cls_position = 17;
  EXPECT_THROW(rs::VimWeights::random(bad, 0), rs::InvalidArgument);
  bad = tiny_vim();
  bad.state = 65;
  EXPECT_THROW(rs::VimWeights::random(bad, 0), rs::InvalidArgument);
}

// Each tensor's rows are addressed as row x its own stride: every stride,
// not only u's, is held to 64 bits (a huge out_stride beside a small
// u_stride wrapped the offsets), and the conv's transposed taps too.
TEST(SsmErrors, EveryStrideIsBounded) {
  const float dummy = 0.0f;
  rs::SelectiveScanParams p;
  p.u = p.dt = p.A_log = p.B = p.C = &dummy;
  p.out = const_cast<float*>(&dummy);
  p.batch = 1 << 12;
  p.length = 1 << 12;
  p.channels = p.u_stride = p.dt_stride = p.out_stride = p.z_stride = 16;
  p.state = p.bc_stride = 16;
  EXPECT_NO_THROW(p.check("scan"));
  p.out_stride = INT64_C(1) << 40;
  expect_refused([&] { p.check("scan"); }, {"scan", "out size 4096 x 4096 x 1099511627776 overflows"});
  p.out_stride = 16;
  p.z = &dummy;
  p.z_stride = INT64_C(1) << 40;
  expect_refused([&] { p.check("scan"); }, {"z size"});
  p.z_stride = 16;
  p.bc_stride = INT64_C(1) << 40;
  expect_refused([&] { p.check("scan"); }, {"B and C size"});

  rs::CausalConvParams c;
  c.x = c.weight = &dummy;
  c.out = const_cast<float*>(&dummy);
  c.batch = c.length = 1 << 12;
  c.channels = c.x_stride = c.out_stride = 16;
  c.kernel = 4;
  EXPECT_NO_THROW(c.check("conv"));
  c.out_stride = INT64_C(1) << 40;
  expect_refused([&] { c.check("conv"); }, {"conv", "out size"});
  c.out_stride = 16;
  c.kernel = INT64_C(1) << 62;
  expect_refused([&] { c.check("conv"); }, {"weight size"});
}
