// Rate-limited progress lines for long ingests: "users: 5000/20000 rows
// (12000 rows/s, ETA 1s)". Not thread-safe: one per phase, one thread.
#ifndef EMBSUM_STORE_INTERNAL_PROGRESS_H_
#define EMBSUM_STORE_INTERNAL_PROGRESS_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace embsum::store::internal {

class Progress {
 public:
  using Sink = std::function<void(const std::string& line)>;
  // `sink` may be null (silent). At most one line per `interval_s` seconds
  // (0 = a line on every Advance), plus a final line from Done().
  Progress(Sink sink, std::string label, uint64_t total, double interval_s);

  void Advance(uint64_t rows);
  void Done();
  // Rows per second so far.
  double rate() const;

 private:
  void Emit(bool final);
  Sink sink_;
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::chrono::steady_clock::duration interval_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_PROGRESS_H_
