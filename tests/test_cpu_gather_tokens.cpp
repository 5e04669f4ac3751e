// rs::gather_tokens on the Host against the reference, raw and strided,
// for float and 16-bit storage.

#include "test_support.hpp"

template <class T>
class HostGather : public ::testing::Test {};
using GatherTypes = ::testing::Types<float, rs::bf16, rs::half, int>;
TYPED_TEST_SUITE(HostGather, GatherTypes);

template <class T>
std::vector<T> make_values(std::size_t n, std::uint32_t seed) {
  const auto f = ref::random_floats(n, seed, -100.0f, 100.0f);
  std::vector<T> v;
  for (float x : f) v.push_back(T(x));
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TYPED_TEST(HostGather, MatchesReference) {
  using T = TypeParam;
  std::uint32_t seed = 40;
  for (int tokens : {1, 197, 1025}) {
    for (int channels : {1, 3, 384}) {
      const int batch = 2, keep = rs::policies::keep_count(tokens, 0.7, 1);
      const auto x = make_values<T>(std::size_t(batch) * tokens * channels, seed++);
      const auto scores = ref::random_floats(std::size_t(batch) * tokens, seed++);
      std::vector<int> keep_idx(std::size_t(batch) * keep);
      rs::select_top(rs::Host{}, scores.data(), keep_idx.data(), batch, tokens, keep, 1);
      std::vector<T> out(std::size_t(batch) * keep * channels);
      rs::gather_tokens(rs::Host{}, x.data(), keep_idx.data(), out.data(), batch, tokens, keep, channels);
      ASSERT_TRUE(same_bits(out, ref::gather(x, keep_idx, batch, tokens, keep, channels)))
          << "tokens " << tokens << " channels " << channels;
    }
  }
}

TYPED_TEST(HostGather, StridedViewIntoAWiderBuffer) {
  using T = TypeParam;
  const int batch = 3, tokens = 20, keep = 6, channels = 9;
  const auto x = make_values<T>(std::size_t(batch) * tokens * channels, 77);
  std::vector<int> keep_idx{0, 2, 4, 6, 8, 19, 1, 3, 5, 7, 9, 11, 0, 1, 2, 17, 18, 19};
  // out rows sit in a [B, K, 2C] buffer: channels [C, 2C) of each row.
  std::vector<T> wide(std::size_t(batch) * keep * 2 * channels, T(0.0f));
  rs::TensorView<T, 3> out{wide.data() + channels, {batch, keep, channels}, {keep * 2 * channels, 2 * channels, 1}};
  rs::gather_tokens(rs::Host{}, rs::make_view(x.data(), {batch, tokens, channels}),
                    rs::make_view(keep_idx.data(), {batch, keep}), out);
  const auto expected = ref::gather(x, keep_idx, batch, tokens, keep, channels);
  for (int r = 0; r < batch * keep; ++r) {
    EXPECT_EQ(std::memcmp(wide.data() + std::size_t(r) * 2 * channels + channels,
                          expected.data() + std::size_t(r) * channels, channels * sizeof(T)), 0);
    EXPECT_EQ(float(wide[std::size_t(r) * 2 * channels]), 0.0f);  // untouched
  }
}
