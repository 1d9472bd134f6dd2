#include "scoring/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
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
  for (DType dtype :
       {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt8}) {
    EXPECT_EQ(ParseDType(DTypeName(dtype)), dtype);
  }
  EXPECT_EQ(DTypeName(DType::kInt8), "int8");
  EXPECT_EQ(DTypeSize(DType::kInt8), 1u);
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

// The packed int8 block: values at ((k / 4) * n + j) * 4 + k % 4, zero
// past d; then one scale per row (max|x| / 127) and the row sums.
TEST(DTypeTest, Int8BlockLayoutScalesAndSums) {
  const uint32_t n = 3, d = 6;  // d4 = 8
  EXPECT_EQ(Int8BlockBytes(n, d), 3u * 8 + 8 * 3);
  std::vector<float> x = {1.0f,  -2.0f, 0.5f, 4.0f,  -4.0f, 2.0f,  // row 0
                          0.0f,  0.0f,  0.0f, 0.0f,  0.0f,  0.0f,  // row 1
                          -0.1f, 0.2f,  NAN,  0.05f, 0.0f,  0.1f};
  std::vector<uint8_t> block(Int8BlockBytes(n, d));
  QuantizeInt8Block(x.data(), n, d, block.data());
  auto value = [&](uint32_t j, uint32_t k) {
    return static_cast<int8_t>(block[((k / 4) * n + j) * 4 + k % 4]);
  };
  auto scale = [&](uint32_t j) {
    float s;
    std::memcpy(&s, block.data() + n * 8 + 4 * j, 4);
    return s;
  };
  auto sum = [&](uint32_t j) {
    int32_t s;
    std::memcpy(&s, block.data() + n * 8 + 4 * n + 4 * j, 4);
    return s;
  };
  EXPECT_FLOAT_EQ(scale(0), 4.0f / 127);
  EXPECT_EQ(value(0, 3), 127);
  EXPECT_EQ(value(0, 4), -127);
  EXPECT_EQ(value(0, 0), 32);  // 1 / (4 / 127) = 31.75
  EXPECT_EQ(value(0, 6), 0);   // padding
  EXPECT_EQ(value(0, 7), 0);
  EXPECT_EQ(sum(0), 32 - 64 + 16 + 127 - 127 + 64);
  EXPECT_EQ(scale(1), 0.0f);  // all-zero row
  EXPECT_EQ(sum(1), 0);
  EXPECT_EQ(value(2, 2), 0);  // NaN stored as 0, scale from the finite ones
  EXPECT_FLOAT_EQ(scale(2), 0.2f / 127);
  int32_t want_sum = 0;
  for (uint32_t k = 0; k < d; ++k) want_sum += value(2, k);
  EXPECT_EQ(sum(2), want_sum);

  std::vector<float> back(x.size());
  DequantizeInt8Block(block.data(), n, d, back.data());
  for (uint32_t j = 0; j < n; ++j) {
    for (uint32_t k = 0; k < d; ++k) {
      const float want = std::isnan(x[j * d + k]) ? 0.0f : x[j * d + k];
      EXPECT_NEAR(back[j * d + k], want, scale(j) / 2 * 1.0001f)
          << j << "," << k;
    }
  }
}

// Element-wise int8 conversion uses a unit scale, saturating at +-127.
TEST(DTypeTest, Int8ElementsRoundAndSaturate) {
  const std::vector<float> in = {0.4f, -1.6f, 300.0f, -300.0f, NAN};
  std::vector<int8_t> stored(in.size());
  ConvertFromFloat(in, DType::kInt8, stored.data());
  EXPECT_EQ(stored, (std::vector<int8_t>{0, -2, 127, -127, 0}));
  std::vector<float> out(in.size());
  ConvertToFloat(stored.data(), DType::kInt8, out);
  EXPECT_EQ(out, (std::vector<float>{0, -2, 127, -127, 0}));
}

}  // namespace
}  // namespace embsum::scoring
