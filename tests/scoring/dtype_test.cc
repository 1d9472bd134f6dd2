#include "scoring/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace embsum::scoring {
namespace {

uint16_t ToHalf(float x) {
  uint16_t out;
  const float in[1] = {x};
  ConvertFromFloat(in, DType::kFloat16, &out);
  return out;
}

uint16_t ToBf16(float x) {
  uint16_t out;
  const float in[1] = {x};
  ConvertFromFloat(in, DType::kBFloat16, &out);
  return out;
}

float FromBits(uint16_t bits, DType dtype) {
  float out[1];
  ConvertToFloat(&bits, dtype, out);
  return out[0];
}

TEST(DTypeTest, NamesAndSizes) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    EXPECT_EQ(ParseDType(DTypeName(dtype)), dtype);
  }
  EXPECT_EQ(DTypeName(DType::kBFloat16), "bf16");
  EXPECT_EQ(ParseDType("float32"), std::nullopt);
  EXPECT_EQ(ParseDType(""), std::nullopt);
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeSize(DType::kFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
}

TEST(DTypeTest, HalfKnownValues) {
  EXPECT_EQ(ToHalf(0.0f), 0x0000);
  EXPECT_EQ(ToHalf(-0.0f), 0x8000);
  EXPECT_EQ(ToHalf(1.0f), 0x3c00);
  EXPECT_EQ(ToHalf(-2.0f), 0xc000);
  EXPECT_EQ(ToHalf(65504.0f), 0x7bff);  // largest finite
  EXPECT_EQ(ToHalf(65520.0f), 0x7c00);  // rounds to +inf
  EXPECT_EQ(ToHalf(1e9f), 0x7c00);      // overflow
  EXPECT_EQ(ToHalf(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(ToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(ToHalf(std::ldexp(1.0f, -26)), 0x0000);  // underflow
  EXPECT_EQ(ToHalf(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  // Ties round to even.
  EXPECT_EQ(ToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(ToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(ToHalf(std::ldexp(3.0f, -25)),
            0x0002);  // subnormal tie: up to even
  const uint16_t nan = ToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
}

TEST(DTypeTest, HalfRoundTripsEveryPattern) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float value = FromBits(static_cast<uint16_t>(bits), DType::kFloat16);
    if ((bits & 0x7c00) == 0x7c00 && (bits & 0x03ff) != 0) {
      EXPECT_TRUE(std::isnan(value)) << bits;
      continue;
    }
    EXPECT_EQ(ToHalf(value), bits) << bits;
  }
  EXPECT_EQ(FromBits(0x3c00, DType::kFloat16), 1.0f);
  EXPECT_EQ(FromBits(0x0001, DType::kFloat16), std::ldexp(1.0f, -24));
  EXPECT_EQ(FromBits(0x7c00, DType::kFloat16),
            std::numeric_limits<float>::infinity());
}

TEST(DTypeTest, BFloat16KnownValuesAndRounding) {
  EXPECT_EQ(ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(ToBf16(-2.0f), 0xc000);
  EXPECT_EQ(ToBf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie, even
  EXPECT_EQ(ToBf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie, up
  EXPECT_EQ(ToBf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);  // above tie
  EXPECT_EQ(ToBf16(std::numeric_limits<float>::max()), 0x7f80);  // to +inf
  const uint16_t nan = ToBf16(std::bit_cast<float>(0x7f800001u));
  EXPECT_TRUE(std::isnan(FromBits(nan, DType::kBFloat16)));
}

TEST(DTypeTest, BFloat16RoundTripsEveryPattern) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float value = FromBits(static_cast<uint16_t>(bits), DType::kBFloat16);
    EXPECT_EQ(std::bit_cast<uint32_t>(value), bits << 16);
    if (std::isnan(value)) continue;
    EXPECT_EQ(ToBf16(value), bits) << bits;
  }
}

TEST(DTypeTest, SpansConvertEveryElement) {
  const std::vector<float> values = {0.5f, -1.25f, 3.0f, 1024.0f, -0.0f};
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    std::vector<uint8_t> stored(values.size() * DTypeSize(dtype));
    ConvertFromFloat(values, dtype, stored.data());
    std::vector<float> back(values.size(), 99.0f);
    ConvertToFloat(stored.data(), dtype, back);
    EXPECT_EQ(back, values) << DTypeName(dtype);  // all exactly representable
  }
}

}  // namespace
}  // namespace embsum::scoring
