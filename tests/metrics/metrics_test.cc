#include "metrics/metrics.h"

#include <unistd.h>

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/process_metrics.h"

namespace embsum::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CounterTest, IncrementsAndIgnoresNegativeOrNonFinite) {
  Counter c;
  c.Increment();
  c.Increment(2.5);
  c.Increment(-1);
  c.Increment(std::numeric_limits<double>::quiet_NaN());
  c.Increment(std::numeric_limits<double>::infinity());
  EXPECT_EQ(c.value(), 3.5);
}

TEST(CounterTest, ConcurrentIncrementsAreNotLost) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 100000; ++i) c.Increment();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 800000);
}

TEST(GaugeTest, SetAndAdd) {
  Gauge g;
  g.Set(10);
  g.Add(-2.5);
  EXPECT_EQ(g.value(), 7.5);
}

TEST(HistogramTest, BucketsAreInclusiveUpperBoundsAndCumulative) {
  const std::vector<double> bounds = {1, 2, 5};
  Histogram h(bounds);
  for (double v : {0.5, 1.0, 1.5, 2.0, 4.0, 7.0, 100.0}) h.Observe(v);
  h.Observe(std::numeric_limits<double>::quiet_NaN());
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 4, 5, 7}));
  EXPECT_EQ(s.count, 7u);
  EXPECT_DOUBLE_EQ(s.sum, 116.0);
}

TEST(HistogramTest, ConcurrentObservationsAreNotLost) {
  const std::vector<double> bounds = {0.5};
  Histogram h(bounds);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < 50000; ++i) h.Observe(t % 2);
    });
  }
  for (auto& t : threads) t.join();
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.cumulative[0], 100000u);
  EXPECT_EQ(s.count, 200000u);
  EXPECT_EQ(s.sum, 100000.0);
}

TEST(BucketsTest, DecadeBucketsSpanTenMicrosecondsToTenSeconds) {
  const std::vector<double> b = DecadeBuckets(1e-5, 10);
  ASSERT_EQ(b.size(), 19u);
  EXPECT_EQ(b.front(), 1e-5);
  EXPECT_EQ(b[1], 2.5e-5);
  EXPECT_EQ(b.back(), 10);
  EXPECT_EQ(FormatValue(b[1]), "2.5e-05");
}

TEST(BucketsTest, ExponentialBuckets) {
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
}

TEST(FormatTest, Values) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(-2.5), "-2.5");
  EXPECT_EQ(FormatValue(1e-4), "0.0001");
  EXPECT_EQ(FormatValue(2.5e-5), "2.5e-05");
  EXPECT_EQ(FormatValue(1234567890), "1234567890");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(FormatTest, Escaping) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(EscapeHelp("a\"b\\c\nd"), "a\"b\\\\c\\nd");
}

TEST(RegistryTest, SerializesEveryTypeInTextFormat) {
  Registry registry;
  auto& requests = registry.AddCounter("app_requests_total", "Requests.",
                                       {"method", "code"});
  requests.WithLabels({"Rank", "OK"}).Increment(3);
  requests.WithLabels({"Rank", "NOT_FOUND"}).Increment();
  registry.AddGauge("app_info", "Build \"info\".", {"version"})
      .WithLabels({"v\"1\""})
      .Set(1);
  const std::vector<double> bounds = {0.1, 1};
  auto& latency =
      registry.AddHistogram("app_seconds", "Latency.", {"method"}, bounds);
  latency.WithLabels({"Rank"}).Observe(0.05);
  latency.WithLabels({"Rank"}).Observe(0.5);
  registry.AddCallback("app_items", "Items.", MetricType::kGauge,
                       [] { return 12.0; });

  EXPECT_EQ(registry.Serialize(),
            "# HELP app_requests_total Requests.\n"
            "# TYPE app_requests_total counter\n"
            "app_requests_total{method=\"Rank\",code=\"NOT_FOUND\"} 1\n"
            "app_requests_total{method=\"Rank\",code=\"OK\"} 3\n"
            "# HELP app_info Build \"info\".\n"
            "# TYPE app_info gauge\n"
            "app_info{version=\"v\\\"1\\\"\"} 1\n"
            "# HELP app_seconds Latency.\n"
            "# TYPE app_seconds histogram\n"
            "app_seconds_bucket{method=\"Rank\",le=\"0.1\"} 1\n"
            "app_seconds_bucket{method=\"Rank\",le=\"1\"} 2\n"
            "app_seconds_bucket{method=\"Rank\",le=\"+Inf\"} 2\n"
            "app_seconds_sum{method=\"Rank\"} 0.55\n"
            "app_seconds_count{method=\"Rank\"} 2\n"
            "# HELP app_items Items.\n"
            "# TYPE app_items gauge\n"
            "app_items 12\n");
}

TEST(RegistryTest, UnlabelledHistogram) {
  Registry registry;
  const std::vector<double> bounds = {1};
  registry.AddHistogram("h_seconds", "H.", {}, bounds)
      .WithLabels({})
      .Observe(2);
  EXPECT_THAT(registry.Serialize(),
              HasSubstr("h_seconds_bucket{le=\"1\"} 0\n"
                        "h_seconds_bucket{le=\"+Inf\"} 1\n"
                        "h_seconds_sum 2\n"
                        "h_seconds_count 1\n"));
}

TEST(RegistryTest, WithLabelsReturnsTheSameChild) {
  Registry registry;
  auto& family = registry.AddCounter("x_total", "X.", {"a"});
  Counter& first = family.WithLabels({"1"});
  EXPECT_EQ(&first, &family.WithLabels({"1"}));
  EXPECT_NE(&first, &family.WithLabels({"2"}));
}

TEST(RegistryTest, RemovedChildLeavesTheExposition) {
  Registry registry;
  auto& family = registry.AddGauge("info", "Info.", {"version"});
  family.WithLabels({"a"}).Set(1);
  family.WithLabels({"b"}).Set(1);
  family.Remove({"a"});
  family.Remove({"never-there"});
  const std::string text = registry.Serialize();
  EXPECT_EQ(text.find("version=\"a\""), std::string::npos) << text;
  EXPECT_NE(text.find("info{version=\"b\"} 1\n"), std::string::npos) << text;
  // Asked for again, it starts from zero.
  EXPECT_EQ(family.WithLabels({"a"}).value(), 0.0);
}

TEST(RegistryDeathTest, RejectsBadNames) {
  Registry registry;
  EXPECT_DEATH(registry.AddCounter("1bad_total", "."), "invalid metric name");
  EXPECT_DEATH(registry.AddCounter("requests", "."), "must end in _total");
  EXPECT_DEATH(registry.AddGauge("g", ".", {"__x"}), "invalid label name");
  const std::vector<double> bounds = {1};
  EXPECT_DEATH(registry.AddHistogram("h", ".", {"le"}, bounds), "label 'le'");
  registry.AddGauge("dup", ".");
  EXPECT_DEATH(registry.AddGauge("dup", "."), "registered twice");
  EXPECT_DEATH(registry.AddGauge("g2", ".", {"a"}).WithLabels({}),
               "0 label values given");
}

TEST(ProcessMetricsTest, ParsesProcStatWithSpacesInTheCommand) {
  // Fields: pid (comm) state ppid ... utime(14) stime(15) ... starttime(22)
  // vsize(23) rss(24).
  std::string stat = "42 (my prog) S";
  for (int field = 4; field <= 30; ++field) {
    std::string v = "0";
    if (field == 14) v = "250";
    if (field == 15) v = "50";
    if (field == 22) v = "1000";
    if (field == 23) v = "4096000";
    if (field == 24) v = "300";
    stat += " " + v;
  }
  absl::StatusOr<ProcessStats> s = ParseProcStat(stat, 100, 4096, 1.7e9);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->cpu_seconds, 3.0);
  EXPECT_DOUBLE_EQ(s->start_time_seconds, 1.7e9 + 10);
  EXPECT_DOUBLE_EQ(s->virtual_bytes, 4096000);
  EXPECT_DOUBLE_EQ(s->resident_bytes, 300 * 4096);
}

TEST(ProcessMetricsTest, RejectsTruncatedStat) {
  absl::StatusOr<ProcessStats> s = ParseProcStat("42 (x) S 1 2", 100, 4096, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("/proc/self/stat"));
}

TEST(ProcessMetricsTest, ReadsThisProcess) {
  absl::StatusOr<ProcessStats> s = ReadProcessStats();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->resident_bytes, 1e6);
  EXPECT_GT(s->virtual_bytes, s->resident_bytes);
  EXPECT_GT(s->start_time_seconds, 1.5e9);
  EXPECT_GE(s->open_fds, 3);
  EXPECT_GT(s->max_fds, s->open_fds);
}

TEST(ProcessMetricsTest, RegistersTheConventionalNames) {
  Registry registry;
  RegisterProcessMetrics(&registry);
  const std::string text = registry.Serialize();
  for (const char* name :
       {"process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_virtual_memory_bytes", "process_start_time_seconds",
        "process_open_fds", "process_max_fds"}) {
    EXPECT_THAT(text, HasSubstr(std::string("\n") + name + " ")) << name;
  }
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
  EXPECT_THAT(text, Not(HasSubstr("process_resident_memory_bytes 0\n")));
}

}  // namespace
}  // namespace embsum::metrics
