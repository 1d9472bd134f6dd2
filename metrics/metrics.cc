#include "metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace embsum::metrics {
namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "metrics: %s\n", message.c_str());
  std::abort();
}

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// Appends `{a="x",b="y"` (no closing brace) or nothing; returns whether a
// brace was opened.
bool AppendLabels(const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string* out) {
  if (names.empty()) return false;
  out->push_back('{');
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out->push_back(',');
    out->append(names[i]);
    out->append("=\"");
    out->append(EscapeLabelValue(values[i]));
    out->push_back('"');
  }
  return true;
}

void AppendHeader(const std::string& name, const std::string& help,
                  MetricType type, std::string* out) {
  out->append("# HELP ").append(name).push_back(' ');
  out->append(EscapeHelp(help)).push_back('\n');
  out->append("# TYPE ").append(name).push_back(' ');
  out->append(TypeName(type)).push_back('\n');
}

void AppendSample(const std::string& name,
                  const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, double value,
                  std::string* out) {
  out->append(name);
  if (AppendLabels(label_names, label_values, out)) out->push_back('}');
  out->push_back(' ');
  out->append(FormatValue(value));
  out->push_back('\n');
}

void AppendHistogram(const std::string& name,
                     const std::vector<std::string>& label_names,
                     const std::vector<std::string>& label_values,
                     const Histogram& histogram, std::string* out) {
  const Histogram::Snapshot snap = histogram.Read();
  for (size_t i = 0; i <= snap.bounds.size(); ++i) {
    out->append(name).append("_bucket");
    if (AppendLabels(label_names, label_values, out)) {
      out->push_back(',');
    } else {
      out->push_back('{');
    }
    out->append("le=\"");
    out->append(i < snap.bounds.size() ? FormatValue(snap.bounds[i]) : "+Inf");
    out->append("\"} ");
    out->append(std::to_string(snap.cumulative[i]));
    out->push_back('\n');
  }
  AppendSample(name + "_sum", label_names, label_values, snap.sum, out);
  AppendSample(name + "_count", label_names, label_values,
               static_cast<double>(snap.count), out);
}

}  // namespace

void Counter::Increment(double v) {
  if (!(v >= 0.0) || std::isinf(v)) return;
  value_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()),
      counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      Die("histogram bounds must be finite and strictly increasing");
    }
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  const size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snap;
  snap.bounds = bounds_;
  snap.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snap.cumulative[i] = running;
  }
  snap.count = running;
  snap.sum = sum_.load(std::memory_order_relaxed);
  return snap;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    Die("ExponentialBuckets needs start > 0, factor > 1, count >= 1");
  }
  std::vector<double> bounds;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) bounds.push_back(v);
  return bounds;
}

std::vector<double> DecadeBuckets(double min, double max) {
  if (!(min > 0) || !(max >= min)) Die("DecadeBuckets needs 0 < min <= max");
  std::vector<double> bounds;
  const int first = static_cast<int>(std::lround(std::log10(min)));
  for (int e = first;; ++e) {
    for (double m : {1.0, 2.5, 5.0}) {
      // Round to 15 significant digits so that bounds print as 2.5e-05,
      // not 2.5000000000000001e-05.
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.15g", m * std::pow(10.0, e));
      const double v = std::strtod(buf, nullptr);
      if (v > max * (1 + 1e-12)) return bounds;
      bounds.push_back(v);
    }
  }
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Like Go's strconv.FormatFloat(v, 'g', -1, 64), which Prometheus's own
  // clients use (so bucket bounds read le="0.0001", le="2.5e-05"), except
  // that large integers stay in fixed notation up to 1e21.
  char buf[64];
  auto result =
      std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  const std::string scientific(buf, result.ptr);
  const int exponent = std::atoi(scientific.c_str() + scientific.find('e') + 1);
  if (v != 0 && (exponent < -4 || exponent >= 21)) return scientific;
  result = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return std::string(buf, result.ptr);
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

template <typename T>
T& Family<T>::WithLabels(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size()) {
    Die(name_ + ": " + std::to_string(label_values.size()) +
        " label values given; the family has " +
        std::to_string(label_names_.size()) + " labels");
  }
  absl::MutexLock lock(&registry_->mu_);
  auto& child = children_[label_values];
  if (child == nullptr) {
    if constexpr (std::is_same_v<T, Histogram>) {
      child = std::make_unique<Histogram>(bounds_);
    } else {
      child = std::make_unique<T>();
    }
  }
  return *child;
}

template <typename T>
void Family<T>::Remove(const std::vector<std::string>& label_values) {
  absl::MutexLock lock(&registry_->mu_);
  children_.erase(label_values);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

void Registry::CheckNewName(const std::string& name, MetricType type,
                            const std::vector<std::string>& label_names) const {
  if (!IsValidMetricName(name)) Die("invalid metric name '" + name + "'");
  if (type == MetricType::kCounter &&
      (name.size() < 6 || name.substr(name.size() - 6) != "_total")) {
    Die("counter '" + name + "' must end in _total");
  }
  for (const Entry& e : entries_) {
    if (e.name == name) Die("metric '" + name + "' registered twice");
  }
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label)) {
      Die(name + ": invalid label name '" + label + "'");
    }
    if (type == MetricType::kHistogram && label == "le") {
      Die(name + ": a histogram cannot have a label 'le'");
    }
  }
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  CheckNewName(name, MetricType::kCounter, label_names);
  counters_.push_back(std::unique_ptr<Family<Counter>>(new Family<Counter>(
      this, name, std::move(help), std::move(label_names), {})));
  Entry entry;
  entry.name = std::move(name);
  entry.type = MetricType::kCounter;
  entry.counter = counters_.back().get();
  entries_.push_back(std::move(entry));
  return *counters_.back();
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  CheckNewName(name, MetricType::kGauge, label_names);
  gauges_.push_back(std::unique_ptr<Family<Gauge>>(new Family<Gauge>(
      this, name, std::move(help), std::move(label_names), {})));
  Entry entry;
  entry.name = std::move(name);
  entry.type = MetricType::kGauge;
  entry.gauge = gauges_.back().get();
  entries_.push_back(std::move(entry));
  return *gauges_.back();
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  CheckNewName(name, MetricType::kHistogram, label_names);
  Histogram check(bounds);  // dies on bad bounds at registration time
  histograms_.push_back(std::unique_ptr<Family<Histogram>>(
      new Family<Histogram>(this, name, std::move(help), std::move(label_names),
                            std::move(bounds))));
  Entry entry;
  entry.name = std::move(name);
  entry.type = MetricType::kHistogram;
  entry.histogram = histograms_.back().get();
  entries_.push_back(std::move(entry));
  return *histograms_.back();
}

void Registry::AddCallback(std::string name, std::string help, MetricType type,
                           std::function<double()> read) {
  absl::MutexLock lock(&mu_);
  if (type == MetricType::kHistogram) {
    Die(name + ": callback metrics cannot be histograms");
  }
  CheckNewName(name, type, {});
  Entry entry;
  entry.name = std::move(name);
  entry.type = type;
  entry.help = std::move(help);
  entry.read = std::move(read);
  entries_.push_back(std::move(entry));
}

std::string Registry::Serialize() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  out.reserve(8192);
  for (const Entry& e : entries_) {
    if (e.read) {
      AppendHeader(e.name, e.help, e.type, &out);
      AppendSample(e.name, {}, {}, e.read(), &out);
    } else if (e.counter != nullptr) {
      AppendHeader(e.name, e.counter->help_, e.type, &out);
      for (const auto& [values, child] : e.counter->children_) {
        AppendSample(e.name, e.counter->label_names_, values, child->value(),
                     &out);
      }
    } else if (e.gauge != nullptr) {
      AppendHeader(e.name, e.gauge->help_, e.type, &out);
      for (const auto& [values, child] : e.gauge->children_) {
        AppendSample(e.name, e.gauge->label_names_, values, child->value(),
                     &out);
      }
    } else if (e.histogram != nullptr) {
      AppendHeader(e.name, e.histogram->help_, e.type, &out);
      for (const auto& [values, child] : e.histogram->children_) {
        AppendHistogram(e.name, e.histogram->label_names_, values, *child,
                        &out);
      }
    }
  }
  return out;
}

}  // namespace embsum::metrics
