#include "store/internal/npy.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store_test_util.h"

namespace embsum::store {
namespace {

using testing::FloatBytes;
using ::testing::HasSubstr;
using testing::NpyBytes;
using testing::TempDir;
using testing::WriteAll;

constexpr char kDict234[] =
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }";

std::vector<float> Iota(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * 0.5f - 3.0f;
  return v;
}

absl::StatusOr<std::unique_ptr<NpyArray>> OpenBytes(const TempDir& dir,
                                                    const std::string& bytes) {
  std::string path = dir / "a.npy";
  WriteAll(path, bytes);
  return NpyArray::Open(path, "users/upe.npy");
}

TEST(NpyTest, ReadsVersions123) {
  TempDir dir;
  std::vector<float> values = Iota(24);
  for (int major : {1, 2, 3}) {
    auto a = OpenBytes(dir, NpyBytes(kDict234, FloatBytes(values), major));
    ASSERT_TRUE(a.ok()) << major << ": " << a.status();
    EXPECT_EQ((*a)->header().major_version, major);
    EXPECT_EQ((*a)->shape(), (std::vector<uint64_t>{2, 3, 4}));
    EXPECT_EQ((*a)->rows(), 2u);
    EXPECT_EQ((*a)->row_elements(), 12u);
    std::vector<float> row(12);
    (*a)->ReadRow(1, row);
    EXPECT_EQ(row, std::vector<float>(values.begin() + 12, values.end()));
  }
}

TEST(NpyTest, ReadsFloat16) {
  TempDir dir;
  // 1.0, -2.0, 0.5, 65504 in IEEE binary16.
  const uint16_t halves[] = {0x3c00, 0xc000, 0x3800, 0x7bff};
  std::string data(reinterpret_cast<const char*>(halves), sizeof(halves));
  auto a = OpenBytes(
      dir,
      NpyBytes("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }",
               data));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->dtype(), NpyDType::kFloat16);
  std::vector<float> row(2);
  (*a)->ReadRow(0, row);
  EXPECT_EQ(row, (std::vector<float>{1.0f, -2.0f}));
  (*a)->ReadRow(1, row);
  EXPECT_EQ(row, (std::vector<float>{0.5f, 65504.0f}));
}

TEST(NpyTest, AcceptsKeysInAnyOrderAndDoubleQuotes) {
  TempDir dir;
  auto a =
      OpenBytes(dir, NpyBytes("{\"shape\": (1, 2), \"fortran_order\": False, "
                              "\"descr\": \"<f4\"}",
                              FloatBytes({1, 2})));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->shape(), (std::vector<uint64_t>{1, 2}));
}

struct BadCase {
  const char* name;
  std::string bytes;
  const char* message;
};

TEST(NpyTest, RejectsEveryViolationWithTheFileAndProblem) {
  TempDir dir;
  const std::string good = FloatBytes(Iota(24));
  std::string bad_magic = NpyBytes(kDict234, good);
  bad_magic[1] = 'X';
  std::string bad_version = NpyBytes(kDict234, good);
  bad_version[6] = 4;
  const BadCase cases[] = {
      {"magic", bad_magic, "missing \\x93NUMPY magic"},
      {"version", bad_version, "unsupported .npy version 4.0"},
      {"big endian",
       NpyBytes(
           "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
           good),
       "dtype '>f4' is not supported"},
      {"float64",
       NpyBytes(
           "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3, 4), }",
           good),
       "dtype '<f8' is not supported"},
      {"fortran",
       NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }",
                good),
       "fortran_order is True"},
      {"truncated", NpyBytes(kDict234, good.substr(0, good.size() - 5)),
       "truncated: shape (2, 3, 4) needs 96 bytes of data, file has 91"},
      {"trailing", NpyBytes(kDict234, good + "xyz"), "3 unexpected bytes"},
      {"syntax", NpyBytes("{'descr': '<f4', 'fortran_order': Maybe}", good),
       "unsupported value for key 'fortran_order'"},
      {"no shape", NpyBytes("{'descr': '<f4', 'fortran_order': False}", good),
       "missing 'shape'"},
      {"extra key",
       NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), "
                "'x': (1,)}",
                good),
       "unexpected key 'x'"},
      {"header cut", std::string("\x93NUMPY\x01\x00\xff\x00{'de", 14),
       "truncated header"},
      {"empty", std::string(), "missing \\x93NUMPY magic"},
      {"unpadded header",
       std::string("\x93NUMPY\x01\x00\x3b\x00", 10) +
           "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } \n" +
           FloatBytes({1}),
       "not a multiple of the element size 4"},
  };
  for (const BadCase& c : cases) {
    auto a = OpenBytes(dir, c.bytes);
    ASSERT_FALSE(a.ok()) << c.name;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(a.status().message()), HasSubstr("users/upe.npy: "))
        << c.name;
    EXPECT_THAT(std::string(a.status().message()), HasSubstr(c.message))
        << c.name << ": " << a.status();
  }
}

TEST(NpyTest, CheckShapeNamesBothShapes) {
  TempDir dir;
  auto a = OpenBytes(dir, NpyBytes(kDict234, FloatBytes(Iota(24))));
  ASSERT_TRUE(a.ok());
  const uint64_t same[] = {2, 3, 4};
  EXPECT_TRUE((*a)->CheckShape(same).ok());
  const uint64_t other[] = {2, 4, 3};
  absl::Status s = (*a)->CheckShape(other);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("shape (2, 3, 4) does not match the manifest: "
                        "expected (2, 4, 3)"));
}

TEST(NpyTest, MissingFileIsNotFound) {
  auto a = NpyArray::Open("/nonexistent/x.npy", "items/cpe.npy");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("items/cpe.npy"));
}

TEST(NpyWriterTest, RoundTripsBothDtypes) {
  TempDir dir;
  std::vector<float> values = Iota(24);
  for (NpyDType dtype : {NpyDType::kFloat32, NpyDType::kFloat16}) {
    std::string path = dir / "w.npy";
    auto w = NpyWriter::Create(path, dtype, {2, 3, 4});
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Append(std::span<const float>(values).first(10)).ok());
    EXPECT_FALSE((*w)->Finish().ok()) << "short file must not finish";
    ASSERT_TRUE((*w)->Append(std::span<const float>(values).subspan(10)).ok());
    EXPECT_FALSE((*w)->Append(values).ok()) << "overflow must fail";
    ASSERT_TRUE((*w)->Finish().ok());
    auto a = NpyArray::Open(path, "w.npy");
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ((*a)->header().data_offset % 64, 0u);
    EXPECT_EQ((*a)->dtype(), dtype);
    std::vector<float> row(12);
    (*a)->ReadRow(1, row);
    // Multiples of 0.5 in [-3, 9] are exact in float16 too.
    EXPECT_EQ(row, std::vector<float>(values.begin() + 12, values.end()));
  }
}

}  // namespace
}  // namespace embsum::store
