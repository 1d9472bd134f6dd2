// ANN on GPU: store/ann_index.cc and store/ann_gpu.cc built with
// EMBSUM_HAVE_FAISS_GPU against faiss_gpu_api/ (the FAISS 1.8.0 GPU and CUDA
// runtime declarations they use, with controllable fake definitions). Proves
// the guarded code compiles against those signatures and that the GPU copy
// is used when allowed and present, and that every failure leaves the CPU
// index answering with identical results.
#include "store/internal/ann_gpu.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "fake_faiss_gpu.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scoring/item_arena.h"
#include "store/internal/ann_index.h"
#include "store/item_catalog.h"

namespace embsum::store::internal {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
namespace fake = ::embsum::fake_faiss_gpu;

constexpr uint32_t kCodes = 4;  // n
constexpr uint32_t kDim = 16;   // d
constexpr uint32_t kUserCodes = 3;
constexpr uint32_t kItems = 600;

using Best = absl::flat_hash_map<uint32_t, float>;

// Collects AnnOptions::gpu_log lines as "level: message".
class LogSink {
 public:
  AnnGpuIndex::Log log() {
    return [this](std::string_view level, std::string_view m) {
      absl::MutexLock lock(&mu_);
      lines_.push_back(std::string(level) + ": " + std::string(m));
    };
  }
  std::vector<std::string> lines() const {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_;
};

class AnnGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::Reset();
    AnnGpuIndex::ResetLogStateForTesting();
    arena_ = std::make_unique<scoring::ItemArena>(
        scoring::ArenaLayout{.item_codes = kCodes, .dim = kDim}, kItems);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    std::vector<float> cpe(size_t{kCodes} * kDim);
    for (uint32_t i = 0; i < kItems; ++i) {
      for (float& v : cpe) v = normal(rng);
      size_t row = 0;
      ASSERT_TRUE(arena_->AppendRow(cpe, {}, &row).ok());
    }
    live_.assign(kItems, 1);
    for (uint32_t i = 0; i < kItems; i += 7) live_[i] = 0;  // some dead rows
    queries_.resize(size_t{kUserCodes} * kDim);
    for (float& v : queries_) v = normal(rng);
  }
  void TearDown() override {
    EXPECT_EQ(fake::state().overlapping_calls, 0)
        << "two FAISS GPU calls overlapped";
  }

  AnnOptions Options(bool ivf) {
    AnnOptions o;
    o.flat_max_items = ivf ? 100 : 100000;
    o.ivf_lists = 8;
    o.ivf_probes = 8;
    o.gpu_log = sink_.log();
    return o;
  }
  std::shared_ptr<const AnnIndex> Build(const AnnOptions& options,
                                        uint32_t begin = 0,
                                        uint32_t end = kItems) {
    auto built = AnnIndex::Build(*arena_, begin, end, live_, options,
                                 options.flat_max_items >= kItems, nullptr);
    EXPECT_TRUE(built.ok()) << built.status();
    return built.ok() ? *built : nullptr;
  }
  Best Search(const AnnIndex& ann, size_t k) {
    Best best;
    absl::Status s = ann.Search(queries_, kUserCodes, k, 1, &best);
    EXPECT_TRUE(s.ok()) << s;
    return best;
  }
  // What the same index answers with the GPU off.
  Best CpuReference(bool ivf, size_t k) {
    AnnOptions o = Options(ivf);
    o.gpu = AnnOptions::Gpu::kOff;
    std::shared_ptr<const AnnIndex> cpu = Build(o);
    EXPECT_FALSE(cpu->on_gpu());
    return Search(*cpu, k);
  }

  std::unique_ptr<scoring::ItemArena> arena_;
  std::vector<uint8_t> live_;
  std::vector<float> queries_;
  LogSink sink_;
};

TEST_F(AnnGpuTest, CompiledInWithTheFaissGpuApi) {
  EXPECT_TRUE(AnnGpuIndex::kCompiledIn);
}

TEST_F(AnnGpuTest, NoDeviceKeepsTheCpuIndexAndLogsOnce) {
  const Best reference = CpuReference(false, 40);
  std::shared_ptr<const AnnIndex> a = Build(Options(false));
  std::shared_ptr<const AnnIndex> b = Build(Options(false));
  EXPECT_FALSE(a->on_gpu());
  EXPECT_EQ(fake::state().clones, 0);
  EXPECT_EQ(fake::state().resources_alive, 0);
  EXPECT_EQ(Search(*a, 40), reference);
  EXPECT_EQ(fake::state().gpu_searches, 0);
  EXPECT_THAT(sink_.lines(),
              ElementsAre(AllOf(HasSubstr("info: ANN on GPU: no usable CUDA"),
                                HasSubstr("fake CUDA: found no device"),
                                HasSubstr("stay on the CPU"))));
}

TEST_F(AnnGpuTest, DriverErrorNeverReachesFaissDeviceQuery) {
  // FAISS 1.8's getNumDevices() aborts on this error: it must not be called.
  fake::state().num_devices = 1;
  fake::state().cuda_error = 35;  // cudaErrorInsufficientDriver
  std::shared_ptr<const AnnIndex> a = Build(Options(false));
  EXPECT_FALSE(a->on_gpu());
  EXPECT_EQ(fake::state().cuda_device_count_calls, 1);
  EXPECT_EQ(fake::state().faiss_num_devices_calls, 0);
  EXPECT_EQ(fake::state().clones, 0);
  EXPECT_THAT(
      sink_.lines(),
      ElementsAre(AllOf(HasSubstr("warning: "),
                        HasSubstr("driver is older than this runtime"))));
}

TEST_F(AnnGpuTest, OffNeverTouchesTheGpu) {
  fake::state().num_devices = 1;
  AnnOptions o = Options(true);
  o.gpu = AnnOptions::Gpu::kOff;
  std::shared_ptr<const AnnIndex> a = Build(o);
  EXPECT_FALSE(a->on_gpu());
  Search(*a, 40);
  EXPECT_EQ(fake::state().cuda_device_count_calls, 0);
  EXPECT_EQ(fake::state().clones, 0);
  EXPECT_EQ(fake::state().gpu_searches, 0);
  EXPECT_THAT(sink_.lines(), IsEmpty());
}

TEST_F(AnnGpuTest, FlatAndIvfAreSearchedOnTheGpu) {
  for (bool ivf : {false, true}) {
    SCOPED_TRACE(ivf ? "IVF" : "flat");
    fake::Reset();
    fake::state().num_devices = 2;
    const Best reference = CpuReference(ivf, 40);
    AnnOptions o = Options(ivf);
    o.gpu_device = 1;
    std::shared_ptr<const AnnIndex> a = Build(o);
    EXPECT_EQ(a->is_ivf(), ivf);
    EXPECT_TRUE(a->on_gpu());
    EXPECT_EQ(fake::state().clones, 1);
    EXPECT_EQ(fake::state().last_clone_device, 1);
    EXPECT_EQ(Search(*a, 40), reference);
    EXPECT_EQ(fake::state().gpu_searches, 1);
    EXPECT_TRUE(a->on_gpu());
  }
  // The first use of the device is logged, each time it is set up.
  EXPECT_THAT(sink_.lines(),
              ElementsAre(HasSubstr("info: ANN on GPU: ANN indexes are "
                                    "searched on GPU 1 of 2 (first: flat"),
                          HasSubstr("searched on GPU 1 of 2 (first: IVF")));
}

TEST_F(AnnGpuTest, CopyFailureLogsAndStaysOnTheCpu) {
  fake::state().num_devices = 1;
  fake::state().clone_throws = true;
  const Best reference = CpuReference(true, 40);
  std::shared_ptr<const AnnIndex> a = Build(Options(true));
  EXPECT_FALSE(a->on_gpu());
  EXPECT_EQ(Search(*a, 40), reference);
  EXPECT_EQ(fake::state().gpu_searches, 0);
  EXPECT_EQ(fake::state().gpu_indexes_alive, 0);
  EXPECT_THAT(sink_.lines(),
              ElementsAre(AllOf(
                  HasSubstr("warning: ANN on GPU 0: copying the IVF"),
                  HasSubstr("no memory left"), HasSubstr("stays on the CPU"))));
}

TEST_F(AnnGpuTest, RepeatedCopyFailuresAreLoggedAtPowersOfTwo) {
  fake::state().num_devices = 1;
  fake::state().clone_throws = true;
  for (int i = 0; i < 5; ++i) Build(Options(false));
  std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 3u);  // failures 1, 2 and 4
  EXPECT_THAT(lines[1], HasSubstr("failure #2"));
  EXPECT_THAT(lines[2], HasSubstr("failure #4"));
}

TEST_F(AnnGpuTest, MissingDeviceStaysOnTheCpu) {
  fake::state().num_devices = 1;
  AnnOptions o = Options(false);
  o.gpu_device = 3;
  std::shared_ptr<const AnnIndex> a = Build(o);
  EXPECT_FALSE(a->on_gpu());
  EXPECT_EQ(fake::state().clones, 0);
  EXPECT_THAT(sink_.lines(),
              ElementsAre(HasSubstr("gpu_device 3 does not exist (1 dev")));
}

TEST_F(AnnGpuTest, SearchFailureFallsBackToTheCpuForGood) {
  fake::state().num_devices = 1;
  const Best reference = CpuReference(true, 40);
  std::shared_ptr<const AnnIndex> a = Build(Options(true));
  ASSERT_TRUE(a->on_gpu());
  fake::state().search_throws = true;
  EXPECT_EQ(Search(*a, 40), reference);  // answered by the CPU index
  EXPECT_EQ(fake::state().gpu_searches, 1);
  EXPECT_FALSE(a->on_gpu());
  EXPECT_EQ(Search(*a, 40), reference);
  EXPECT_EQ(fake::state().gpu_searches, 1);  // not tried again
  std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 2u);  // first use, then the failure, once
  EXPECT_THAT(lines[1],
              AllOf(HasSubstr("warning: "), HasSubstr("device fault 700"),
                    HasSubstr("searched on the CPU from now on")));
}

TEST_F(AnnGpuTest, KAboveTheGpuLimitIsSearchedOnTheCpu) {
  fake::state().num_devices = 1;
  fake::state().max_k = 32;
  const Best reference = CpuReference(false, 64);
  std::shared_ptr<const AnnIndex> a = Build(Options(false));
  ASSERT_TRUE(a->on_gpu());
  EXPECT_EQ(Search(*a, 64), reference);
  EXPECT_EQ(fake::state().gpu_searches, 0);
  EXPECT_TRUE(a->on_gpu());  // not a failure
  EXPECT_EQ(Search(*a, 16), CpuReference(false, 16));
  EXPECT_EQ(fake::state().gpu_searches, 1);
  EXPECT_EQ(sink_.lines().size(), 1u);  // first use only
}

TEST_F(AnnGpuTest, IndexesShareOneResourcesObjectPerDevice) {
  fake::state().num_devices = 1;
  {
    std::shared_ptr<const AnnIndex> main = Build(Options(true), 0, 500);
    std::shared_ptr<const AnnIndex> tail = Build(Options(false), 500, kItems);
    EXPECT_TRUE(main->on_gpu());
    EXPECT_TRUE(tail->on_gpu());
    EXPECT_EQ(fake::state().resources_alive, 1);
    EXPECT_EQ(fake::state().gpu_indexes_alive, 2);
  }
  // Freed with the last index: an idle process holds no GPU memory.
  EXPECT_EQ(fake::state().gpu_indexes_alive, 0);
  EXPECT_EQ(fake::state().resources_alive, 0);
}

TEST_F(AnnGpuTest, ConcurrentSearchesAndRebuildsNeverOverlapOnTheGpu) {
  fake::state().num_devices = 1;
  fake::state().search_sleep_us = 50;
  std::shared_ptr<const AnnIndex> main = Build(Options(true), 0, 500);
  std::shared_ptr<const AnnIndex> tail = Build(Options(false), 500, kItems);
  Best expected = Search(*main, 40);
  for (const auto& [row, score] : Search(*tail, 40)) {
    auto [it, inserted] = expected.emplace(row, score);
    if (!inserted) it->second = std::max(it->second, score);
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 30; ++i) {
        Best best;
        for (const AnnIndex* ann : {main.get(), tail.get()}) {
          if (!ann->Search(queries_, kUserCodes, 40, 1, &best).ok()) {
            mismatches++;
          }
        }
        if (best != expected) mismatches++;
      }
    });
  }
  // A writer building and dropping tail indexes meanwhile (copies and frees
  // on the same device).
  threads.emplace_back([&] {
    for (int i = 0; i < 10; ++i) Build(Options(false), 500, kItems);
  });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, 0);
  EXPECT_TRUE(main->on_gpu());
  EXPECT_EQ(fake::state().gpu_searches, 2 + 6 * 30 * 2);
  EXPECT_EQ(fake::state().clones, 2 + 10);
}

TEST_F(AnnGpuTest, LogsToStderrWithoutALogFunction) {
  AnnOptions o = Options(false);
  o.gpu_log = nullptr;
  ::testing::internal::CaptureStderr();
  Build(o);
  EXPECT_THAT(
      ::testing::internal::GetCapturedStderr(),
      HasSubstr("embsum store: info: ANN on GPU: no usable CUDA device"));
}

TEST(ParseAnnGpuTest, AcceptsAutoAndOffOnly) {
  EXPECT_EQ(ParseAnnGpu("auto"), AnnOptions::Gpu::kAuto);
  EXPECT_EQ(ParseAnnGpu("off"), AnnOptions::Gpu::kOff);
  EXPECT_EQ(ParseAnnGpu("on"), std::nullopt);
  EXPECT_EQ(ParseAnnGpu(""), std::nullopt);
}

}  // namespace
}  // namespace embsum::store::internal
