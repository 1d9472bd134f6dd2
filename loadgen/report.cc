#include "loadgen/report.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace embsum::loadgen {
namespace {

nlohmann::json LatencyJson(const LatencyHistogram& h) {
  return {
      {"p50", h.SecondsAtQuantile(0.50)}, {"p90", h.SecondsAtQuantile(0.90)},
      {"p99", h.SecondsAtQuantile(0.99)}, {"p999", h.SecondsAtQuantile(0.999)},
      {"max", h.max_nanos() * 1e-9},      {"min", h.min_nanos() * 1e-9},
      {"mean", h.mean_nanos() * 1e-9},    {"count", h.count()},
  };
}

nlohmann::json CodesJson(const LoadResult& r) {
  nlohmann::json codes = nlohmann::json::object();
  for (const auto& [code, n] : r.codes) codes[StatusCodeName(code)] = n;
  return codes;
}

// Fills the per-run numbers into `j`.
void AddResult(const LoadResult& r, nlohmann::json& j) {
  j["requests"] = r.requests;
  j["qps"] = r.qps();
  j["error_qps"] = r.error_qps();
  j["errors"] = r.errors;
  j["codes"] = CodesJson(r);
  j["measured_seconds"] = r.measured_seconds;
  j["offered_qps"] = r.offered_qps();
  j["warmup_requests"] = r.warmup_requests;
  j["warmup_errors"] = r.warmup_errors;
  j["late_sends"] = r.late_sends;
  const uint64_t ok = r.requests - r.errors;
  j["mean_response_bytes"] =
      ok == 0 ? 0.0 : static_cast<double>(r.response_bytes) / ok;
  j["latency_seconds"] = LatencyJson(r.latency);
  j["service_latency_seconds"] = LatencyJson(r.service_latency);
}

std::string Ms(double seconds) {
  return absl::StrFormat("%.3f ms", seconds * 1e3);
}

std::string XmlEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A round axis maximum >= v: 1, 2 or 5 times a power of ten.
double NiceCeil(double v) {
  if (!(v > 0)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

std::string FormatPercentileLabel(int decade) {
  // decade 0 -> "0%", 1 -> "90%", 2 -> "99%", 3 -> "99.9%", ...
  if (decade == 0) return "0%";
  if (decade == 1) return "90%";
  if (decade == 2) return "99%";
  return absl::StrCat("99.", std::string(decade - 2, '9'), "%");
}

}  // namespace

std::string StatusCodeName(absl::StatusCode code) {
  const int n = static_cast<int>(code);
  if (n < 0 || n > 16) return absl::StrCat("CODE_", n);
  return absl::StatusCodeToString(code);
}

nlohmann::json ReportJson(const RunInfo& info, const LoadResult& result,
                          const SweepResult* sweep,
                          const SweepOptions* sweep_options) {
  nlohmann::json j;
  j["target"] = info.target;
  j["target_kind"] = info.target_kind;
  j["mode"] = info.concurrency > 0 ? "closed_loop" : "open_loop";
  j["concurrency"] = info.concurrency;
  j["rate"] = info.rate;
  if (info.concurrency == 0) j["arrival"] = info.arrival;
  j["duration_seconds"] = info.duration_seconds;
  j["warmup_seconds"] = info.warmup_seconds;
  j["candidates"] = info.candidates;
  j["mean_candidates"] = info.mean_candidates;
  j["mean_request_bytes"] = info.mean_request_bytes;
  j["channels"] = info.channels;
  j["threads"] = info.threads;
  if (!info.server_backend.empty()) {
    j["server"] = {
        {"model_version", info.server_model_version},
        {"backend", info.server_backend},
        {"dim", info.server_dim},
        {"user_codes", info.server_user_codes},
        {"item_codes", info.server_item_codes},
        {"users", info.server_users},
        {"items", info.server_items},
    };
  }
  AddResult(result, j);
  if (sweep != nullptr) {
    nlohmann::json s;
    if (sweep_options != nullptr) {
      s["slo_seconds"] = sweep_options->slo_seconds;
      s["factor"] = sweep_options->factor;
      s["max_error_ratio"] = sweep_options->max_error_ratio;
    }
    s["max_rate_within_slo"] =
        sweep->best >= 0 ? sweep->steps[sweep->best].rate : 0.0;
    nlohmann::json steps = nlohmann::json::array();
    for (const SweepStep& step : sweep->steps) {
      nlohmann::json js;
      js["rate"] = step.rate;
      js["held"] = step.held;
      AddResult(step.result, js);
      steps.push_back(std::move(js));
    }
    s["steps"] = std::move(steps);
    j["sweep"] = std::move(s);
  }
  return j;
}

std::string ReportText(const RunInfo& info, const LoadResult& r) {
  std::string out = absl::StrCat(
      "embsum-loadgen: ", info.target_kind, " at ", info.target, ", ",
      info.concurrency > 0
          ? absl::StrCat("closed loop, concurrency ", info.concurrency)
          : absl::StrFormat("open loop, %s arrivals at %.1f/s", info.arrival,
                            info.rate),
      absl::StrFormat(", %.1f s measured after %.1f s warm-up\n",
                      info.duration_seconds, info.warmup_seconds));
  if (!info.server_backend.empty()) {
    absl::StrAppendFormat(
        &out, "  server    model %s (d=%d m=%d n=%d, %d users, %d items), %s\n",
        info.server_model_version, info.server_dim, info.server_user_codes,
        info.server_item_codes, info.server_users, info.server_items,
        info.server_backend);
  }
  std::vector<std::string> codes;
  for (const auto& [code, n] : r.codes) {
    codes.push_back(absl::StrCat(StatusCodeName(code), "=", n));
  }
  absl::StrAppendFormat(&out,
                        "  requests  %d in %.2f s: %.1f OK/s, %d errors "
                        "(%.1f/s)\n",
                        r.requests, r.measured_seconds, r.qps(), r.errors,
                        r.error_qps());
  absl::StrAppend(&out, "  codes     ",
                  codes.empty() ? "(none)" : absl::StrJoin(codes, " "), "\n");
  if (r.warmup_errors > 0) {
    absl::StrAppendFormat(&out, "  warm-up   %d requests, %d errors\n",
                          r.warmup_requests, r.warmup_errors);
  }
  const LatencyHistogram& h = r.latency;
  absl::StrAppend(
      &out, "  latency   p50 ", Ms(h.SecondsAtQuantile(0.5)), "  p90 ",
      Ms(h.SecondsAtQuantile(0.9)), "  p99 ", Ms(h.SecondsAtQuantile(0.99)),
      "  p99.9 ", Ms(h.SecondsAtQuantile(0.999)), "  max ",
      Ms(h.max_nanos() * 1e-9), "  mean ", Ms(h.mean_nanos() * 1e-9), "\n");
  if (info.concurrency == 0) {
    const LatencyHistogram& s = r.service_latency;
    absl::StrAppend(&out,
                    "  (latency counts from each request's intended send "
                    "time; from the actual send: p50 ",
                    Ms(s.SecondsAtQuantile(0.5)), "  p99 ",
                    Ms(s.SecondsAtQuantile(0.99)), "; ", r.late_sends,
                    " sends were over 1 ms late)\n");
  }
  const uint64_t ok = r.requests - r.errors;
  absl::StrAppendFormat(
      &out,
      "  payload   %.1f candidates (%s), request %.0f B, response %.0f B\n",
      info.mean_candidates, info.candidates, info.mean_request_bytes,
      ok == 0 ? 0.0 : static_cast<double>(r.response_bytes) / ok);
  return out;
}

std::string SweepText(const SweepResult& sweep, const SweepOptions& options) {
  std::string out =
      absl::StrFormat("sweep: p99 SLO %s, %d steps\n", Ms(options.slo_seconds),
                      static_cast<int>(sweep.steps.size()));
  for (const SweepStep& s : sweep.steps) {
    absl::StrAppendFormat(
        &out, "  rate %10.1f/s  achieved %10.1f OK/s  p99 %s  errors %d  %s\n",
        s.rate, s.result.qps(), Ms(s.result.latency.SecondsAtQuantile(0.99)),
        s.result.errors, s.held ? "held" : "BROKE");
  }
  if (sweep.best >= 0) {
    absl::StrAppendFormat(&out, "highest rate within the SLO: %.1f/s\n",
                          sweep.steps[sweep.best].rate);
  } else {
    absl::StrAppend(&out, "no rate held the SLO; lower the starting --rate\n");
  }
  return out;
}

std::vector<SpectrumPoint> PercentileSpectrum(const LatencyHistogram& h,
                                              int ticks_per_half) {
  std::vector<SpectrumPoint> out;
  if (h.count() == 0) return out;
  const uint64_t n = h.count();
  auto point = [&](double q) {
    SpectrumPoint p;
    p.percentile = q * 100;
    p.latency_seconds = h.SecondsAtQuantile(q);
    p.total_count = q >= 1 ? n : static_cast<uint64_t>(std::ceil(q * n));
    return p;
  };
  for (int i = 0;; ++i) {
    const double tail = std::pow(0.5, static_cast<double>(i) / ticks_per_half);
    // Stop once the tail is thinner than one sample.
    if (tail * n < 1.0) break;
    out.push_back(point(1.0 - tail));
  }
  out.push_back(point(1.0));
  return out;
}

std::string SpectrumCsv(const LatencyHistogram& h) {
  std::string out = "percentile,latency_seconds,total_count,inverse_tail\n";
  for (const SpectrumPoint& p : PercentileSpectrum(h)) {
    absl::StrAppendFormat(&out, "%.6f,%.9f,%d,", p.percentile,
                          p.latency_seconds, p.total_count);
    if (p.percentile < 100) {
      absl::StrAppendFormat(&out, "%.3f", 1.0 / (1.0 - p.percentile / 100));
    }
    out += "\n";
  }
  return out;
}

std::string SpectrumSvg(std::span<const PlotSeries> series,
                        absl::string_view title) {
  constexpr double kWidth = 800, kHeight = 500;
  constexpr double kLeft = 80, kRight = 200, kTop = 50, kBottom = 60;
  constexpr double kPlotW = kWidth - kLeft - kRight;
  constexpr double kPlotH = kHeight - kTop - kBottom;
  static constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c",
                                            "#ff7f0e", "#9467bd", "#8c564b",
                                            "#e377c2", "#17becf"};
  // The x axis is log10(1 / (1 - p)); the 100th percentile sits one tick
  // past the last resolvable one.
  std::vector<std::vector<SpectrumPoint>> spectra;
  double x_max = 2;  // at least up to 99%
  double y_max_ms = 0;
  for (const PlotSeries& s : series) {
    spectra.push_back(s.histogram ? PercentileSpectrum(*s.histogram)
                                  : std::vector<SpectrumPoint>{});
    if (s.histogram && s.histogram->count() > 0) {
      x_max = std::max(
          x_max,
          std::ceil(std::log10(static_cast<double>(s.histogram->count()))));
      y_max_ms = std::max(y_max_ms, s.histogram->max_nanos() * 1e-6);
    }
  }
  x_max = std::min(x_max, 7.0);
  y_max_ms = NiceCeil(y_max_ms * 1.05);
  auto x_of = [&](double percentile) {
    const double tail = 1.0 - percentile / 100;
    const double x = tail <= 0 ? x_max : std::min(x_max, -std::log10(tail));
    return kLeft + kPlotW * x / x_max;
  };
  auto y_of = [&](double seconds) {
    return kTop + kPlotH * (1.0 - (seconds * 1e3) / y_max_ms);
  };

  std::string out = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
      "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%.0f\" y=\"28\" font-size=\"16\">%s</text>\n",
      kWidth, kHeight, kWidth, kHeight, kLeft, XmlEscape(title));
  // Axes, grid and tick labels.
  absl::StrAppendFormat(
      &out,
      "<g stroke=\"black\" fill=\"none\"><rect x=\"%.1f\" y=\"%.1f\" "
      "width=\"%.1f\" height=\"%.1f\"/></g>\n",
      kLeft, kTop, kPlotW, kPlotH);
  for (int d = 0; d <= static_cast<int>(x_max); ++d) {
    const double x = kLeft + kPlotW * d / x_max;
    absl::StrAppendFormat(
        &out,
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
        "stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
        "text-anchor=\"middle\">%s</text>\n",
        x, kTop, x, kTop + kPlotH, x, kTop + kPlotH + 18,
        FormatPercentileLabel(d));
  }
  for (int i = 0; i <= 5; ++i) {
    const double v = y_max_ms * i / 5;
    const double y = kTop + kPlotH * (1.0 - i / 5.0);
    absl::StrAppendFormat(
        &out,
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
        "stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
        "text-anchor=\"end\">%g</text>\n",
        kLeft, y, kLeft + kPlotW, y, kLeft - 6, y + 4, v);
  }
  absl::StrAppendFormat(
      &out,
      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">percentile</text>\n"
      "<text x=\"20\" y=\"%.1f\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 20 %.1f)\">latency (ms)</text>\n",
      kLeft + kPlotW / 2, kHeight - 15, kTop + kPlotH / 2, kTop + kPlotH / 2);
  // One polyline per series, and the legend.
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kColors[i % std::size(kColors)];
    std::vector<std::string> points;
    for (const SpectrumPoint& p : spectra[i]) {
      points.push_back(absl::StrFormat("%.1f,%.1f", x_of(p.percentile),
                                       y_of(p.latency_seconds)));
    }
    if (!points.empty()) {
      absl::StrAppendFormat(&out,
                            "<polyline fill=\"none\" stroke=\"%s\" "
                            "stroke-width=\"2\" points=\"%s\"/>\n",
                            color, absl::StrJoin(points, " "));
    }
    const double ly = kTop + 10 + 20 * i;
    absl::StrAppendFormat(
        &out,
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
        "stroke-width=\"2\"/>\n<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
        kLeft + kPlotW + 12, ly, kLeft + kPlotW + 36, ly, color,
        kLeft + kPlotW + 42, ly + 4, XmlEscape(series[i].name));
  }
  out += "</svg>\n";
  return out;
}

absl::Status WriteFile(const std::string& path, absl::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return absl::PermissionDeniedError(absl::StrCat(
        path, ": cannot open for writing: ", std::strerror(errno)));
  }
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) {
    return absl::DataLossError(absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

}  // namespace embsum::loadgen
