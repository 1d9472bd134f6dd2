// Checks the fragment layout of the fast CUDA kernel on the CPU: emulating
// the mma.sync operand layouts of the PTX ISA (m16n8k8.tf32 and
// m16n8k16.f16/bf16) over the prepared user fragments and the item columns
// each lane loads must reproduce A·Bᵀ. A wrong permutation fails here
// without a GPU.
#include "scoring/cuda/fragment_layout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <tuple>
#include <vector>

namespace embsum::scoring::cuda_internal {
namespace {

struct Matrices {
  uint32_t m = 0, d = 0;
  std::vector<double> a;  // m x d
  std::vector<double> b;  // 8 x d (one n8 tile of item rows)
};

Matrices RandomMatrices(uint32_t m, uint32_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Matrices x;
  x.m = m;
  x.d = d;
  x.a.resize(size_t{m} * d);
  x.b.resize(size_t{8} * d);
  for (double& v : x.a) v = u(rng);
  for (double& v : x.b) v = u(rng);
  return x;
}

double UserValue(const Matrices& x, uint32_t row, uint32_t col) {
  return row < x.m && col < x.d ? x.a[size_t{row} * x.d + col] : 0.0;
}

double ItemValue(const Matrices& x, uint32_t row, uint32_t col) {
  return col < x.d ? x.b[size_t{row} * x.d + col] : 0.0;
}

// Emulates the kernel's chunk loop for one m-tile and one n8 tile and
// returns D (16 x 8).
std::vector<double> EmulateTile(const Matrices& x, uint32_t elem_bytes,
                                uint32_t mtile) {
  const uint32_t per_chunk = ChunkElements(elem_bytes);
  const uint32_t chunks = (x.d + per_chunk - 1) / per_chunk;
  const uint32_t ksteps = elem_bytes == 4 ? 8 : 16;
  std::vector<double> out(16 * 8, 0.0);
  for (uint32_t c = 0; c < chunks; ++c) {
    for (uint32_t s = 0; s < kStepsPerChunk; ++s) {
      // Logical MMA operands, assembled from every lane's registers.
      std::vector<double> a_tile(16 * ksteps, NAN), b_tile(ksteps * 8, NAN);
      for (uint32_t lane = 0; lane < 32; ++lane) {
        const uint32_t g = lane >> 2, t = lane & 3;
        const uint32_t halves = elem_bytes == 4 ? 1 : 2;
        for (uint32_t r = 0; r < 4; ++r) {
          for (uint32_t h = 0; h < halves; ++h) {
            // PTX: A fragment element (row, k) of register r, half h.
            const uint32_t row = g + 8 * (r & 1);
            const uint32_t k =
                elem_bytes == 4 ? t + 4 * (r >> 1) : 2 * t + h + 8 * (r >> 1);
            a_tile[row * ksteps + k] =
                UserValue(x, FragmentRow(mtile, lane, r),
                          FragmentColumn(elem_bytes, c, s, lane, r, h));
          }
        }
        // The lane's 16-byte load: physical columns of item row g.
        const uint32_t first = c * per_chunk + t * (16 / elem_bytes);
        for (uint32_t j = 0; j < 2; ++j) {  // b0, b1 = words 2s, 2s+1
          const uint32_t word = 2 * s + j;
          for (uint32_t h = 0; h < halves; ++h) {
            const uint32_t phys = first + word * halves + h;
            const uint32_t k = elem_bytes == 4 ? t + 4 * j : 2 * t + h + 8 * j;
            b_tile[k * 8 + g] = ItemValue(x, g, phys);
          }
        }
      }
      for (double v : a_tile) EXPECT_FALSE(std::isnan(v)) << "A hole";
      for (double v : b_tile) EXPECT_FALSE(std::isnan(v)) << "B hole";
      for (uint32_t i = 0; i < 16; ++i) {
        for (uint32_t n = 0; n < 8; ++n) {
          for (uint32_t k = 0; k < ksteps; ++k) {
            out[i * 8 + n] += a_tile[i * ksteps + k] * b_tile[k * 8 + n];
          }
        }
      }
    }
  }
  return out;
}

class FragmentLayoutTest : public ::testing::TestWithParam<
                               std::tuple<uint32_t, uint32_t, uint32_t>> {};

TEST_P(FragmentLayoutTest, EmulatedMmaReproducesProduct) {
  const auto [elem_bytes, m, d] = GetParam();
  const Matrices x = RandomMatrices(m, d, 17 + m + d);
  for (uint32_t mtile = 0; mtile < kMTiles; ++mtile) {
    const std::vector<double> tile = EmulateTile(x, elem_bytes, mtile);
    for (uint32_t i = 0; i < 16; ++i) {
      for (uint32_t n = 0; n < 8; ++n) {
        double want = 0.0;
        const uint32_t row = mtile * 16 + i;
        for (uint32_t k = 0; k < d && row < m; ++k) {
          want += x.a[size_t{row} * d + k] * x.b[size_t{n} * d + k];
        }
        EXPECT_NEAR(tile[i * 8 + n], want, 1e-9)
            << "elem_bytes " << elem_bytes << " row " << row << " col " << n;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FragmentLayoutTest,
    ::testing::Values(std::make_tuple(4u, 32u, 64u),
                      std::make_tuple(4u, 7u, 20u),  // d tail in a chunk
                      std::make_tuple(4u, 32u, 512u),
                      std::make_tuple(2u, 32u, 64u),
                      std::make_tuple(2u, 19u, 40u),  // d tail in a chunk
                      std::make_tuple(2u, 32u, 512u)));

TEST(FragmentLayoutTest, EachUserElementAppearsOncePerTile) {
  for (uint32_t elem_bytes : {4u, 2u}) {
    const uint32_t per_chunk = ChunkElements(elem_bytes);
    const uint32_t halves = elem_bytes == 4 ? 1 : 2;
    for (uint32_t mtile = 0; mtile < kMTiles; ++mtile) {
      std::set<std::pair<uint32_t, uint32_t>> seen;
      for (uint32_t s = 0; s < kStepsPerChunk; ++s) {
        for (uint32_t lane = 0; lane < 32; ++lane) {
          for (uint32_t r = 0; r < 4; ++r) {
            for (uint32_t h = 0; h < halves; ++h) {
              const uint32_t col = FragmentColumn(elem_bytes, 0, s, lane, r, h);
              EXPECT_LT(col, per_chunk);
              EXPECT_TRUE(
                  seen.insert({FragmentRow(mtile, lane, r), col}).second);
            }
          }
        }
      }
      EXPECT_EQ(seen.size(), size_t{16} * per_chunk);
    }
  }
}

TEST(FragmentLayoutTest, SlotInvertsRowAndColumn) {
  for (uint32_t elem_bytes : {4u, 2u}) {
    const uint32_t halves = elem_bytes == 4 ? 1 : 2;
    for (uint32_t c = 0; c < 3; ++c) {
      for (uint32_t s = 0; s < kStepsPerChunk; ++s) {
        for (uint32_t mt = 0; mt < kMTiles; ++mt) {
          for (uint32_t lane = 0; lane < 32; ++lane) {
            for (uint32_t r = 0; r < 4; ++r) {
              for (uint32_t h = 0; h < halves; ++h) {
                const uint32_t want = FragmentOffset(elem_bytes, c, s, mt, 0) +
                                      lane * 16 + r * 4 + h * 2;
                EXPECT_EQ(
                    FragmentSlot(elem_bytes, FragmentRow(mt, lane, r),
                                 FragmentColumn(elem_bytes, c, s, lane, r, h)),
                    want)
                    << elem_bytes << " " << c << " " << s << " " << mt << " "
                    << lane << " " << r << " " << h;
              }
            }
          }
        }
      }
    }
  }
}

TEST(FragmentLayoutTest, OffsetsTileThePreparedMatrix) {
  for (uint32_t elem_bytes : {4u, 2u}) {
    const uint32_t d = 3 * ChunkElements(elem_bytes);
    const uint32_t parts = elem_bytes == 4 ? 1 : 2;
    std::set<uint32_t> offsets;
    for (uint32_t c = 0; c < 3; ++c) {
      for (uint32_t s = 0; s < kStepsPerChunk; ++s) {
        for (uint32_t mt = 0; mt < kMTiles; ++mt) {
          for (uint32_t p = 0; p < parts; ++p) {
            const uint32_t off = FragmentOffset(elem_bytes, c, s, mt, p);
            EXPECT_EQ(off % 512, 0u);
            EXPECT_LT(off + 512, PreparedMatrixBytes(elem_bytes, d) + 1);
            EXPECT_TRUE(offsets.insert(off).second);
          }
        }
      }
    }
    EXPECT_EQ(offsets.size() * 512, PreparedMatrixBytes(elem_bytes, d));
    // 32 user rows x padded d x 4 bytes either way (fp32, or 16-bit hi+lo).
    EXPECT_EQ(PreparedMatrixBytes(elem_bytes, d), 32u * d * 4u);
  }
}

// The scatter preparation (fused_score.cu, ScatterQuad) writes four
// consecutive elements c..c+3 (c a multiple of 4) of a row with 32-bit
// stores: for 16-bit storage, (c, c+1) must be the low and high halves of
// one aligned word, and so must (c+2, c+3); for fp32 each is its own word.
TEST(FragmentLayoutTest, ConsecutivePairsShareOneWordForSixteenBit) {
  for (uint32_t row = 0; row < kUserRowsPerPass; ++row) {
    for (uint32_t col = 0; col < 128; col += 2) {
      const uint32_t slot = FragmentSlot(2, row, col);
      EXPECT_EQ(slot % 4, 0u) << row << " " << col;
      EXPECT_EQ(FragmentSlot(2, row, col + 1), slot + 2) << row << " " << col;
    }
    for (uint32_t col = 0; col < 64; ++col) {
      EXPECT_EQ(FragmentSlot(4, row, col) % 4, 0u) << row << " " << col;
    }
  }
}

}  // namespace
}  // namespace embsum::scoring::cuda_internal
