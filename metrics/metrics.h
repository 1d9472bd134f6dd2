// A small Prometheus client: counters, gauges and histograms, grouped into
// labelled families in a Registry, rendered in the Prometheus text exposition
// format 0.0.4. prometheus-cpp is not packaged for Debian 12, hence this.
//
// Hot path: Counter::Increment, Gauge::Set/Add and Histogram::Observe are
// lock-free (relaxed atomics) and allocation-free. Register metrics once at
// start-up, keep the references (they stay valid as long as the Registry),
// and observe through them. Family::WithLabels and Registry::Serialize take
// the registry's mutex; call WithLabels outside the hot path or cache its
// result.
//
// Names follow Prometheus rules (metric [a-zA-Z_:][a-zA-Z0-9_:]*, label
// [a-zA-Z_][a-zA-Z0-9_]*, no "__" prefix, no "le" label on histograms).
// Registering an invalid or duplicate name is a programming error and aborts
// with a message naming it.
#ifndef EMBSUM_METRICS_METRICS_H_
#define EMBSUM_METRICS_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace embsum::metrics {

// A monotonically increasing value. Thread-safe, lock-free.
class Counter {
 public:
  // v must be >= 0 and finite; other values are ignored (a counter never
  // goes down).
  void Increment(double v = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down. Thread-safe, lock-free.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Distribution of observations over fixed upper bounds (Prometheus "le",
// inclusive) plus an implicit +Inf bucket. Thread-safe, lock-free.
class Histogram {
 public:
  // bounds: strictly increasing, finite.
  explicit Histogram(std::span<const double> bounds);

  // NaN observations are ignored.
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;        // without +Inf
    std::vector<uint64_t> cumulative;  // size bounds.size() + 1 (+Inf last)
    double sum = 0.0;
    uint64_t count = 0;  // == cumulative.back()
  };
  // Reads every bucket once. Concurrent observations may land in the
  // buckets and not yet in the sum (or vice versa), never half-way.
  Snapshot Read() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
};

// Bucket helpers.
// start, start*factor, ... (count bounds). start > 0, factor > 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// 1-2.5-5 per decade from `min` (a power of ten) up to and including `max`:
// 1e-5, 2.5e-5, 5e-5, 1e-4, ..., 10.
std::vector<double> DecadeBuckets(double min, double max);

enum class MetricType { kCounter, kGauge, kHistogram };

class Registry;

// A metric name with fixed label names; one child per distinct label value
// tuple. Thread-safe. Children live as long as the Registry.
template <typename T>
class Family {
 public:
  // The child for `label_values` (same order and count as the label names),
  // created on first use. Aborts on a wrong number of values. Takes the
  // registry mutex: cache the reference.
  T& WithLabels(const std::vector<std::string>& label_values);
  // Drops the child for `label_values` (if any) from the exposition, for
  // series whose label set goes away (the model_version of a replaced
  // model). References WithLabels returned for it dangle afterwards: only
  // for children nobody caches.
  void Remove(const std::vector<std::string>& label_values);

  const std::string& name() const { return name_; }

 private:
  friend class Registry;
  Family(Registry* registry, std::string name, std::string help,
         std::vector<std::string> label_names, std::vector<double> bounds)
      : registry_(registry),
        name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}

  Registry* registry_;
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;  // histograms only
  // Guarded by registry_->mu_.
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

// Owns metric families and renders them. Thread-safe.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Counter names must end in "_total" (promtool's rule).
  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds);

  // Unlabelled metrics whose value is read at scrape time (sizes of stores,
  // process_* from /proc). `read` is called under the registry mutex, from
  // the scraping thread: it must be thread-safe and must not touch this
  // registry. MetricType kHistogram is not allowed.
  void AddCallback(std::string name, std::string help, MetricType type,
                   std::function<double()> read);

  // The text exposition format 0.0.4, families in registration order.
  std::string Serialize() const;

 private:
  template <typename T>
  friend class Family;

  struct Entry {
    std::string name;
    MetricType type = MetricType::kGauge;
    Family<Counter>* counter = nullptr;
    Family<Gauge>* gauge = nullptr;
    Family<Histogram>* histogram = nullptr;
    std::string help;              // callbacks only
    std::function<double()> read;  // callbacks only
  };

  void CheckNewName(const std::string& name, MetricType type,
                    const std::vector<std::string>& label_names) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Family<Counter>>> counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_
      ABSL_GUARDED_BY(mu_);
};

// Text-format helpers (exposed for tests).
// Shortest round-trip decimal; "+Inf", "-Inf", "NaN" for non-finite.
std::string FormatValue(double v);
// Escapes \ " and newline for a label value.
std::string EscapeLabelValue(std::string_view v);
// Escapes \ and newline for HELP text.
std::string EscapeHelp(std::string_view v);

}  // namespace embsum::metrics

#endif  // EMBSUM_METRICS_METRICS_H_
