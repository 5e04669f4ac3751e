// The selection order shared by every Exec: ordered keys, ranks and the
// keep-ratio rule.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <repshift/repshift.hpp>

namespace rs = repshift;
using rs::policies::ordered_key;
using rs::policies::ranks_before;

TEST(SelectPolicy, OrderedKeyIsMonotone) {
  const float inf = std::numeric_limits<float>::infinity();
  const float values[] = {-inf, -1e30f, -2.5f, -1e-30f, 0.0f, 1e-38f, 1.0f, 3e38f, inf};
  for (std::size_t i = 0; i + 1 < std::size(values); ++i) {
    EXPECT_LT(ordered_key(values[i]), ordered_key(values[i + 1])) << values[i];
  }
}

TEST(SelectPolicy, SignedZerosTieAndNaNRanksLowest) {
  EXPECT_EQ(ordered_key(-0.0f), ordered_key(0.0f));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_LT(ordered_key(nan), ordered_key(-std::numeric_limits<float>::infinity()));
  EXPECT_EQ(ordered_key(nan), ordered_key(-nan));
}

TEST(SelectPolicy, TiesGoToTheLowerIndex) {
  EXPECT_TRUE(ranks_before(1.0f, 3, 1.0f, 7));
  EXPECT_FALSE(ranks_before(1.0f, 7, 1.0f, 3));
  EXPECT_TRUE(ranks_before(2.0f, 9, 1.0f, 0));
  EXPECT_TRUE(ranks_before(-0.0f, 1, 0.0f, 2));
}

TEST(SelectPolicy, KeepCountFloorsAndHonoursProtect) {
  EXPECT_EQ(rs::policies::keep_count(197, 0.8), 157);  // floor(157.6)
  // The paper's rule drops floor(r N): 197 -> 158 -> 127 -> 102 at r = 0.2.
  EXPECT_EQ(rs::policies::keep_after_drop(197, 0.2), 158);
  EXPECT_EQ(rs::policies::keep_after_drop(158, 0.2), 127);
  EXPECT_EQ(rs::policies::keep_after_drop(127, 0.2), 102);
  EXPECT_EQ(rs::policies::keep_after_drop(200, 0.2), 160);  // exact despite 0.2's rounding
  EXPECT_EQ(rs::policies::keep_after_drop(10, 0.0), 10);
  EXPECT_EQ(rs::policies::keep_after_drop(10, 1.0), 0);
  EXPECT_EQ(rs::policies::keep_after_drop(10, 1.0, 2), 2);   // protected tokens stay
  EXPECT_EQ(rs::policies::keep_after_drop(1, 0.5, 3), 1);    // never more than the sample has
  EXPECT_THROW(rs::policies::keep_after_drop(10, -0.1), rs::InvalidArgument);
  EXPECT_THROW(rs::policies::keep_after_drop(10, std::nan("")), rs::InvalidArgument);
  EXPECT_EQ(rs::policies::keep_count(200, 0.8), 160);  // exact despite 0.8's rounding
  EXPECT_EQ(rs::policies::keep_count(10, 0.01, 2), 2);
  EXPECT_EQ(rs::policies::keep_count(10, 0.01), 1);
  EXPECT_EQ(rs::policies::keep_count(10, 1.0), 10);
  EXPECT_THROW(rs::policies::keep_count(10, 0.0), rs::InvalidArgument);
  EXPECT_THROW(rs::policies::keep_count(10, 1.5), rs::InvalidArgument);
  EXPECT_THROW(rs::policies::keep_count(10, std::nan("")), rs::InvalidArgument);
}

TEST(Dtype, Bf16AndHalfRoundTrip) {
  for (float x : {0.0f, -0.0f, 1.0f, -2.5f, 3.140625f, 65504.0f, 6.103515625e-05f, 5.9604645e-08f}) {
    EXPECT_EQ(float(rs::half(x)), x) << x;
  }
  for (float x : {0.0f, 1.0f, -2.5f, 3.140625f, 1e30f}) {
    EXPECT_NEAR(float(rs::bf16(x)), x, std::abs(x) / 128.0f) << x;
  }
  EXPECT_EQ(float(rs::half(1.0f + 1.0f / 2048.0f)), 1.0f);  // halfway: ties to even
  EXPECT_EQ(float(rs::half(65520.0f)), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(float(rs::half(std::nanf("")))));
  EXPECT_TRUE(std::isnan(float(rs::bf16(std::nanf("")))));
  EXPECT_EQ(rs::bf16(1.00390625f).bits, 0x3f80);  // halfway: ties to even (down)
  EXPECT_EQ(rs::bf16(1.01171875f).bits, 0x3f82);  // halfway: ties to even (up)
}
