#include "scoring/item_arena.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace embsum::scoring {
namespace {

std::vector<float> Iota(size_t count, float start) {
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = start + static_cast<float>(i);
  return out;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(ItemArenaTest, LayoutSizes) {
  ArenaLayout layout{8, 512, DType::kFloat32, true};
  EXPECT_EQ(layout.row_elements(), 8u * 512 * 2);
  EXPECT_EQ(layout.row_bytes(), 8u * 512 * 2 * 4);
  layout.has_keys = false;
  layout.dtype = DType::kBFloat16;
  EXPECT_EQ(layout.row_bytes(), 8u * 512 * 2);
  // int8: values (d rounded up to 4), one scale and one sum per code row,
  // per block.
  layout = {8, 30, DType::kInt8, true};
  EXPECT_EQ(layout.block_bytes(), 8u * 32 + 8 * 8);
  EXPECT_EQ(layout.row_bytes(), 2 * (8u * 32 + 8 * 8));
}

// int8 rows: quantized per code row at SetRow, read back within half a
// step (max|row| / 254); CPE and keys blocks independent.
TEST(ItemArenaTest, Int8RowsRoundTripWithinHalfAStep) {
  ItemArena arena({3, 5, DType::kInt8, true}, 2);
  std::vector<float> cpe(15), keys(15);
  for (size_t i = 0; i < 15; ++i) {
    cpe[i] = std::sin(0.7f * static_cast<float>(i)) * (1.0f + i / 5);
    keys[i] = 100.0f * std::cos(0.3f * static_cast<float>(i));
  }
  size_t row = 0;
  ASSERT_TRUE(arena.AppendRow(cpe, keys, &row).ok());
  std::vector<float> got_cpe(15), got_keys(15);
  arena.ReadRow(row, got_cpe, got_keys);
  for (const auto& [want, got] :
       {std::pair{&cpe, &got_cpe}, std::pair{&keys, &got_keys}}) {
    for (size_t j = 0; j < 3; ++j) {
      float max_abs = 0;
      for (size_t k = 0; k < 5; ++k) {
        max_abs = std::max(max_abs, std::fabs((*want)[j * 5 + k]));
      }
      for (size_t k = 0; k < 5; ++k) {
        EXPECT_NEAR((*got)[j * 5 + k], (*want)[j * 5 + k],
                    max_abs / 254 * 1.0001f);
      }
    }
  }
}

TEST(ItemArenaTest, StoresRowsWithKeysAfterCpe) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    ItemArena arena({2, 3, dtype, true}, 4);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(arena.data()) % 64, 0u);
    EXPECT_EQ(arena.size(), 0u);
    const std::vector<float> cpe = Iota(6, 1.0f), keys = Iota(6, 100.0f);
    size_t row = 99;
    ASSERT_TRUE(arena.AppendRow(cpe, keys, &row).ok());
    EXPECT_EQ(row, 0u);
    ASSERT_TRUE(arena.AppendRow(keys, cpe, &row).ok());
    EXPECT_EQ(row, 1u);
    EXPECT_EQ(arena.size(), 2u);
    std::vector<float> got_cpe(6), got_keys(6);
    arena.ReadRow(0, got_cpe, got_keys);
    EXPECT_EQ(got_cpe, cpe);  // small integers are exact in every dtype
    EXPECT_EQ(got_keys, keys);
    arena.ReadRow(1, got_cpe, got_keys);
    EXPECT_EQ(got_cpe, keys);
    EXPECT_EQ(arena.row_data(1) - arena.row_data(0),
              static_cast<ptrdiff_t>(arena.layout().row_bytes()));
  }
}

TEST(ItemArenaTest, SixteenBitStorageRounds) {
  ItemArena arena({1, 2, DType::kBFloat16, false}, 1);
  const std::vector<float> cpe = {1.0f + 1.0f / 1024, 3.14159f};
  ASSERT_TRUE(arena.SetRow(0, cpe, {}).ok());
  std::vector<float> got(2);
  arena.ReadRow(0, got, {});
  EXPECT_EQ(got[0], 1.0f);  // bf16 keeps 8 significant bits
  EXPECT_EQ(got[1], 3.140625f);
}

TEST(ItemArenaTest, SetRowAndPublish) {
  ItemArena arena({1, 2, DType::kFloat32, false}, 3);
  ASSERT_TRUE(arena.SetRow(2, Iota(2, 5.0f), {}).ok());
  EXPECT_EQ(arena.size(), 0u);  // SetRow does not publish
  arena.Publish(3);
  EXPECT_EQ(arena.size(), 3u);
  std::vector<float> got(2);
  arena.ReadRow(2, got, {});
  EXPECT_EQ(got, Iota(2, 5.0f));
  arena.Publish(10);  // clamped to capacity
  EXPECT_EQ(arena.size(), 3u);
}

TEST(ItemArenaTest, RejectsWrongSizesAndRows) {
  ItemArena arena({2, 3, DType::kFloat32, true}, 2);
  Status status = arena.SetRow(0, Iota(5, 0), Iota(6, 0));
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "row 0: cpe has 5 floats"))
      << status.message();
  status = arena.SetRow(1, Iota(6, 0), {});
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "row 1: keys has 0 floats"))
      << status.message();
  status = arena.SetRow(2, Iota(6, 0), Iota(6, 0));
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "row 2 out of range"))
      << status.message();

  ItemArena no_keys({2, 3, DType::kFloat32, false}, 1);
  status = no_keys.SetRow(0, Iota(6, 0), Iota(6, 0));
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "arena has no keys"))
      << status.message();
}

TEST(ItemArenaTest, AppendFailsWhenFullOrInvalid) {
  ItemArena arena({1, 2, DType::kFloat16, false}, 1);
  size_t row = 0;
  // An invalid row is not published.
  EXPECT_FALSE(arena.AppendRow(Iota(3, 0), {}, &row).ok());
  EXPECT_EQ(arena.size(), 0u);
  ASSERT_TRUE(arena.AppendRow(Iota(2, 0), {}, &row).ok());
  const Status status = arena.AppendRow(Iota(2, 0), {}, &row);
  EXPECT_EQ(status.code(), Status::Code::kResourceExhausted);
  EXPECT_TRUE(Contains(status.message(), "full")) << status.message();
  EXPECT_EQ(arena.size(), 1u);

  ItemArena empty({1, 2, DType::kFloat32, false}, 0);
  EXPECT_EQ(empty.AppendRow(Iota(2, 0), {}, &row).code(),
            Status::Code::kResourceExhausted);
}

}  // namespace
}  // namespace embsum::scoring
