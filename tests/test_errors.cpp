// Every refused argument throws rs::InvalidArgument (a std::invalid_argument,
// so a std::exception) whose message names the argument and its value.

#include <climits>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

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
  rs::TensorView<float, 2> sv{m.s.data(), {INT64_C(1) << 40, INT64_C(1) << 20}, {INT64_C(1) << 20, 1}};
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, huge, huge, sv); }, {"overflows"});
  // So does a stride whose product with its extent does (refused before the
  // kernel adds it up).
  auto a = rs::make_view(static_cast<const float*>(m.a.data()), {3, 2, 4});
  auto s = rs::make_view(m.s.data(), {3, 2});
  auto far = a;
  far.stride[0] = INT64_C(1) << 62;
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, far, a, s); },
                 {"before.shape[0] = 3 at stride 4611686018427387904 overflows"});
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
                 {"gather_tokens", "x is a null pointer"});
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

  // Output views whose elements share addresses (two threads would write
  // one): refused, inputs may repeat rows (a broadcast).
  auto s_shared = s;
  s_shared.stride = {0, 0};
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, a, b, s_shared); },
                 {"scores.stride[", "] = 0", "may share an address"});
  auto s_rows_overlap = s;
  s_rows_overlap.stride = {2, 1};  // row b + 1 starts inside row b (4 tokens)
  expect_refused([&] { rs::shift_score<L2>(rs::Host{}, a, b, s_rows_overlap); }, {"scores.stride[0] = 2"});
  auto idx_shared = idx_ok;
  idx_shared.stride = {0, 1};
  expect_refused([&] { rs::select_top(rs::Host{}, rs::TensorView<const float, 2>(s), idx_shared); },
                 {"keep_idx.stride[0] = 0"});
  auto out_overlap = rs::make_view(m.s.data(), {2, 2, 8});
  out_overlap.stride = {1, 1, 1};
  expect_refused([&] { rs::gather_tokens(rs::Host{}, a, idx_ok, out_overlap); }, {"out.stride"});
  auto broadcast = a;  // one sample read for both: fine
  broadcast.stride[0] = 0;
  std::vector<float> scores(8, -1.0f);
  rs::shift_score<L2>(rs::Host{}, broadcast, broadcast, rs::make_view(scores.data(), {2, 4}));
  for (float v : scores) EXPECT_EQ(v, 0.0f);
  // Transposed scores ([B, N] stored token-major) write each element once: fine.
  std::vector<float> transposed(8, -1.0f);
  rs::TensorView<float, 2> st{transposed.data(), {2, 4}, {1, 2}};
  rs::shift_score<L2>(rs::Host{}, a, b, st);
  for (float v : transposed) EXPECT_NEAR(v, std::sqrt(8.0f), 1e-5f);  // |2 - 1| over 8 channels
}

// gather_tokens_varlen's out_cu_seqlens: from 0, room for each sample's
// kept rows, so no sample writes over another or outside out.
TEST(Errors, GatherVarlenOutputOffsets) {
  const int cu[3] = {0, 3, 6}, kept_cu[3] = {0, 2, 4}, keep[4] = {0, 1, 0, 1};
  std::vector<float> x(6 * 4), out(5 * 4, -1.0f);
  std::iota(x.begin(), x.end(), 0.0f);
  const auto gather = [&](const int* out_cu) {
    rs::gather_tokens_varlen(rs::Host{}, x.data(), cu, keep, kept_cu, out.data(), 2, 3, 2, 4, out_cu);
  };
  const int negative[3] = {0, -1000, 4}, past_zero[3] = {5, 5, 5}, no_room[3] = {0, 0, 0}, short_room[3] = {0, 2, 3};
  expect_refused([&] { gather(negative); }, {"out_cu_seqlens decreases"});
  expect_refused([&] { gather(past_zero); }, {"out_cu_seqlens[0] = 5"});
  expect_refused([&] { gather(no_room); }, {"out_cu_seqlens gives sample 0 0 rows for its 2 kept tokens"});
  expect_refused([&] { gather(short_room); }, {"gives sample 1 1 rows for its 2 kept tokens"});
  const int room[3] = {0, 3, 5};  // a spare row after sample 0
  gather(room);
  // Sample 0's tokens 0, 1 at rows 0, 1; row 2 untouched; sample 1's (x rows 3, 4) at rows 3, 4.
  const std::vector<int> x_row = {0, 1, -1, 3, 4};
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 4; ++c)
      EXPECT_EQ(out[std::size_t(r * 4 + c)], x_row[std::size_t(r)] < 0 ? -1.0f : float(x_row[std::size_t(r)] * 4 + c))
          << "row " << r;
}

TEST(Errors, CheckFiniteNamesTheArgument) {
  std::vector<float> x{1.0f, 2.0f};
  expect_refused([&] { rs::check_finite<float>(rs::Host{}, nullptr, 2, "weights"); }, {"weights", "null"});
  expect_refused([&] { rs::check_finite(rs::Host{}, x.data(), -1, "weights"); }, {"count = -1"});
}
