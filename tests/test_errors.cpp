// Every refused argument throws rs::InvalidArgument (a std::invalid_argument,
// so a std::exception) whose message names the argument and its value.

#include <climits>
#include <string>

#include "test_support.hpp"

namespace {

using rs::policies::L2;

struct Buffers {
  std::vector<float> a = std::vector<float>(64, 1.0f), b = std::vector<float>(64, 2.0f),
                     s = std::vector<float>(64);
  std::vector<int> idx = std::vector<int>(64, 0);
};

}  // namespace

TEST(Errors, ShiftScoreNullPointers) {
  Buffers m;
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, (const float*)nullptr, m.b.data(), m.s.data(), 1, 2, 3); },
                 {"shift_score", "before", "null"});
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, m.a.data(), (const float*)nullptr, m.s.data(), 1, 2, 3); },
                 {"after", "null"});
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, m.a.data(), m.b.data(), nullptr, 1, 2, 3); },
                 {"scores", "null"});
}

TEST(Errors, ShiftScoreNonPositiveSizes) {
  Buffers m;
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, m.a.data(), m.b.data(), m.s.data(), 0, 2, 3); },
                 {"batch = 0", "> 0"});
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, m.a.data(), m.b.data(), m.s.data(), 1, -4, 3); },
                 {"tokens = -4"});
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, m.a.data(), m.b.data(), m.s.data(), 1, 2, 0); },
                 {"channels = 0"});
}

TEST(Errors, SizesThatOverflowTheIndexType) {
  Buffers m;
  // 2^31-1 cubed overflows int64: refused before any memory is touched.
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, m.a.data(), m.b.data(), m.s.data(), INT_MAX, INT_MAX, INT_MAX); },
                 {"shift_score", "2147483647 x 2147483647 x 2147483647", "overflows"});
  expect_refused([&] { rs::gather_tokens(rs::Host{}, m.a.data(), m.idx.data(), m.s.data(), INT_MAX, INT_MAX, 2, INT_MAX); },
                 {"gather_tokens", "overflows"});
  // A view whose extents are int64 overflows as well.
  rs::TensorView<const float, 3> huge{m.a.data(), {INT64_C(1) << 40, INT64_C(1) << 20, 1 << 10}, {0, 0, 1}};
  rs::TensorView<float, 2> sv{m.s.data(), {INT64_C(1) << 40, INT64_C(1) << 20}, {0, 0}};
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, huge, huge, sv); }, {"overflows"});
}

TEST(Errors, SelectTopArguments) {
  Buffers m;
  expect_refused([&] { rs::select_top(rs::Host{}, nullptr, m.idx.data(), 1, 8, 4); }, {"select_top", "scores", "null"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), nullptr, 1, 8, 4); }, {"keep_idx", "null"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), -1, 8, 4); }, {"batch = -1"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), 1, 0, 4); }, {"tokens = 0"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), 1, 8, 0); }, {"keep = 0"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), 1, 8, 9); },
                 {"keep = 9", "tokens = 8"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), 1, 8, 4, 5); },
                 {"protect = 5", "keep = 4"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), 1, 8, 8, 9); },
                 {"protect = 9", "tokens = 8"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), 1, 8, 4, -1); },
                 {"protect = -1"});
  expect_refused([&] { rs::select_top(rs::Host{}, m.s.data(), m.idx.data(), INT_MAX, INT_MAX, 4); },
                 {"select_top", "overflows"});
}

TEST(Errors, GatherTokensArguments) {
  Buffers m;
  float* out = m.s.data();
  expect_refused([&] { rs::gather_tokens(rs::Host{}, (const float*)nullptr, m.idx.data(), out, 1, 4, 2, 3); },
                 {"gather_tokens", "x", "null"});
  expect_refused([&] { rs::gather_tokens(rs::Host{}, m.a.data(), nullptr, out, 1, 4, 2, 3); }, {"keep_idx", "null"});
  expect_refused([&] { rs::gather_tokens(rs::Host{}, m.a.data(), m.idx.data(), (float*)nullptr, 1, 4, 2, 3); },
                 {"out", "null"});
  expect_refused([&] { rs::gather_tokens(rs::Host{}, m.a.data(), m.idx.data(), out, 1, 4, 5, 3); },
                 {"keep = 5", "tokens = 4"});
  expect_refused([&] { rs::gather_tokens(rs::Host{}, m.a.data(), m.idx.data(), out, 1, 4, 2, -3); },
                 {"channels = -3"});
  m.idx[1] = 4;  // one past the end
  expect_refused([&] { rs::gather_tokens(rs::Host{}, m.a.data(), m.idx.data(), out, 1, 4, 2, 3); },
                 {"keep_idx[0, 1] = 4", "tokens = 4"});
  m.idx[1] = -7;
  expect_refused([&] { rs::gather_tokens(rs::Host{}, m.a.data(), m.idx.data(), out, 1, 4, 2, 3); },
                 {"keep_idx[0, 1] = -7"});
}

TEST(Errors, ViewShapesAndStrides) {
  Buffers m;
  auto a = rs::make_view(static_cast<const float*>(m.a.data()), {2, 4, 8});
  auto b = rs::make_view(static_cast<const float*>(m.b.data()), {2, 4, 8});
  auto s = rs::make_view(m.s.data(), {2, 4});
  auto wrong_c = rs::make_view(static_cast<const float*>(m.b.data()), {2, 4, 7});
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, a, wrong_c, s); },
                 {"after.shape[2] = 7", "before.shape[2] = 8"});
  auto wrong_s = rs::make_view(m.s.data(), {2, 5});
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, a, b, wrong_s); }, {"scores.shape[1] = 5"});
  auto strided = a;
  strided.stride[2] = 2;
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, strided, b, s); }, {"before.stride[2] = 2", "contiguous"});
  auto negative = a;
  negative.stride[0] = -32;
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, negative, b, s); }, {"before.stride[0] = -32"});

  auto idx = rs::make_view(m.idx.data(), {3, 2});
  expect_refused([&] { rs::select_top(rs::Host{}, rs::TensorView<const float, 2>(s), idx); },
                 {"keep_idx.shape[0] = 3", "scores.shape[0] = 2"});
  auto idx_ok = rs::make_view(m.idx.data(), {2, 2});
  auto out_bad = rs::make_view(m.s.data(), {2, 3, 8});
  expect_refused([&] { rs::gather_tokens(rs::Host{}, a, idx_ok, out_bad); }, {"out.shape[1] = 3", "keep_idx.shape[1] = 2"});
}

TEST(Errors, CheckFiniteNamesTheArgument) {
  std::vector<float> x{1.0f, 2.0f};
  expect_refused([&] { rs::check_finite<float>(rs::Host{}, nullptr, 2, "weights"); }, {"weights", "null"});
  expect_refused([&] { rs::check_finite(rs::Host{}, x.data(), -1, "weights"); }, {"count = -1"});
}
