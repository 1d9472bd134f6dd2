#include "loadgen/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "tests/loadgen/test_files.h"

namespace embsum::loadgen {
namespace {

using ::testing::HasSubstr;

LoadResult SampleResult() {
  LoadResult r;
  r.measured_seconds = 2;
  for (int i = 1; i <= 1000; ++i)
    r.latency.Record(i * 1'000'000LL);  // 1..1000 ms
  r.service_latency = r.latency;
  r.requests = 1000;
  r.errors = 3;
  r.codes[absl::StatusCode::kOk] = 997;
  r.codes[absl::StatusCode::kResourceExhausted] = 3;
  r.response_bytes = 997 * 100;
  return r;
}

RunInfo SampleInfo() {
  RunInfo info;
  info.target = "127.0.0.1:1";
  info.target_kind = "rank";
  info.concurrency = 8;
  info.duration_seconds = 2;
  info.candidates = "500";
  info.mean_candidates = 500;
  return info;
}

TEST(ReportJson, HasTheContractFields) {
  const nlohmann::json j = ReportJson(SampleInfo(), SampleResult());
  EXPECT_DOUBLE_EQ(j["qps"].get<double>(), 997 / 2.0);
  EXPECT_EQ(j["errors"].get<uint64_t>(), 3u);
  EXPECT_EQ(j["codes"]["OK"].get<uint64_t>(), 997u);
  EXPECT_EQ(j["codes"]["RESOURCE_EXHAUSTED"].get<uint64_t>(), 3u);
  const auto& l = j["latency_seconds"];
  EXPECT_NEAR(l["p50"].get<double>(), 0.500, 0.005);
  EXPECT_NEAR(l["p90"].get<double>(), 0.900, 0.009);
  EXPECT_NEAR(l["p99"].get<double>(), 0.990, 0.01);
  EXPECT_NEAR(l["p999"].get<double>(), 0.999, 0.01);
  EXPECT_DOUBLE_EQ(l["max"].get<double>(), 1.0);
  EXPECT_EQ(j["mode"], "closed_loop");
  EXPECT_DOUBLE_EQ(j["mean_response_bytes"].get<double>(), 100);
  EXPECT_FALSE(j.contains("sweep"));
  // Round-trips through text.
  EXPECT_EQ(nlohmann::json::parse(j.dump()), j);
}

TEST(ReportJson, SweepAddsStepsAndTheAnswer) {
  SweepResult sweep;
  sweep.steps.push_back({100, true, SampleResult()});
  sweep.steps.push_back({200, false, SampleResult()});
  sweep.best = 0;
  SweepOptions o;
  o.slo_seconds = 0.05;
  const nlohmann::json j = ReportJson(SampleInfo(), SampleResult(), &sweep, &o);
  EXPECT_DOUBLE_EQ(j["sweep"]["max_rate_within_slo"].get<double>(), 100);
  EXPECT_DOUBLE_EQ(j["sweep"]["slo_seconds"].get<double>(), 0.05);
  ASSERT_EQ(j["sweep"]["steps"].size(), 2u);
  EXPECT_FALSE(j["sweep"]["steps"][1]["held"].get<bool>());
  EXPECT_TRUE(j["sweep"]["steps"][0].contains("latency_seconds"));
  EXPECT_THAT(SweepText(sweep, o),
              HasSubstr("highest rate within the SLO: 100.0/s"));
}

TEST(ReportText, ShowsCodesAndPercentiles) {
  const std::string text = ReportText(SampleInfo(), SampleResult());
  EXPECT_THAT(text, HasSubstr("closed loop, concurrency 8"));
  EXPECT_THAT(text, HasSubstr("OK=997 RESOURCE_EXHAUSTED=3"));
  EXPECT_THAT(text, HasSubstr("3 errors"));
  EXPECT_THAT(text, HasSubstr("p99.9"));
}

TEST(StatusCodeName, NamesGrpcCodesAndOthers) {
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kOk), "OK");
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kDeadlineExceeded),
            "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(static_cast<absl::StatusCode>(42)), "CODE_42");
}

TEST(PercentileSpectrum, IsMonotoneAndEndsAtTheMax) {
  const LoadResult r = SampleResult();
  const auto points = PercentileSpectrum(r.latency);
  ASSERT_GT(points.size(), 20u);
  EXPECT_DOUBLE_EQ(points.front().percentile, 0);
  EXPECT_DOUBLE_EQ(points.back().percentile, 100);
  EXPECT_DOUBLE_EQ(points.back().latency_seconds, 1.0);
  EXPECT_EQ(points.back().total_count, 1000u);
  for (size_t i = 1; i < points.size(); ++i) {
    EXPECT_GT(points[i].percentile, points[i - 1].percentile);
    EXPECT_GE(points[i].latency_seconds, points[i - 1].latency_seconds);
  }
  // Tails thinner than one sample of 1000 are not listed before the max.
  EXPECT_LT(points[points.size() - 2].percentile, 99.91);
  EXPECT_TRUE(PercentileSpectrum(LatencyHistogram()).empty());
}

TEST(SpectrumCsv, HasAHeaderAndOneRowPerPoint) {
  const LoadResult r = SampleResult();
  const std::string csv = SpectrumCsv(r.latency);
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines[0], "percentile,latency_seconds,total_count,inverse_tail");
  EXPECT_EQ(lines.size(), PercentileSpectrum(r.latency).size() + 1);
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> cells = absl::StrSplit(lines[i], ',');
    EXPECT_EQ(cells.size(), 4u) << lines[i];
  }
  EXPECT_THAT(lines.back(), HasSubstr("100.000000,1.000000000,1000,"));
}

TEST(SpectrumSvg, DrawsOneLinePerSeriesAndEscapesText) {
  const LoadResult r = SampleResult();
  std::vector<PlotSeries> series = {{"rank <8>", &r.latency},
                                    {"echo & co", &r.service_latency}};
  const std::string svg = SpectrumSvg(series, "title \"quoted\"");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_THAT(svg, HasSubstr("</svg>\n"));
  size_t polylines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos;
       p = svg.find("<polyline", p + 1)) {
    ++polylines;
  }
  EXPECT_EQ(polylines, 2u);
  EXPECT_THAT(svg, HasSubstr("rank &lt;8&gt;"));
  EXPECT_THAT(svg, HasSubstr("echo &amp; co"));
  EXPECT_THAT(svg, HasSubstr("title &quot;quoted&quot;"));
  for (const char* tick : {">0%<", ">90%<", ">99%<", ">99.9%<"}) {
    EXPECT_THAT(svg, HasSubstr(tick));
  }
  EXPECT_EQ(svg.find("rank <8>"), std::string::npos);
}

TEST(WriteFile, WritesAndNamesThePathOnFailure) {
  TempDir dir;
  const std::string path = dir.path() + "/out.txt";
  ASSERT_TRUE(WriteFile(path, "hello").ok());
  EXPECT_EQ(ReadAll(path), "hello");
  auto bad = WriteFile(dir.path() + "/no/such/dir/x", "x");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.message(), HasSubstr("no/such/dir/x"));
}

}  // namespace
}  // namespace embsum::loadgen
