#include "store/internal/progress.h"

#include "absl/strings/str_format.h"

namespace embsum::store::internal {

Progress::Progress(Sink sink, std::string label, uint64_t total,
                   double interval_s)
    : sink_(std::move(sink)),
      label_(std::move(label)),
      total_(total),
      interval_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(interval_s))),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

double Progress::rate() const {
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  return seconds > 0 ? static_cast<double>(done_) / seconds : 0.0;
}

void Progress::Advance(uint64_t rows) {
  done_ += rows;
  if (!sink_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_ >= interval_) {
    last_ = now;
    Emit(false);
  }
}

void Progress::Done() {
  if (sink_) Emit(true);
}

void Progress::Emit(bool final) {
  double r = rate();
  if (final) {
    sink_(absl::StrFormat("%s: %d rows done (%.0f rows/s)", label_, done_, r));
    return;
  }
  double eta =
      r > 0 && total_ > done_ ? static_cast<double>(total_ - done_) / r : 0.0;
  sink_(absl::StrFormat("%s: %d/%d rows (%.0f rows/s, ETA %.0fs)", label_,
                        done_, total_, r, eta));
}

}  // namespace embsum::store::internal
