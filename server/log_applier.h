// Applies the write log (server/write_log.h) to the model in service: one
// thread per lane (this server's shard's user writes; all item writes),
// each reading its subject in stream order through an ordered JetStream
// consumer that starts after the lane's applied sequence (kept by the
// store, atomically with the data: store/write_stamp.h), or after the
// artifact's manifest log_sequence when that is larger.
//
// Each message is applied to the model current when it arrives, stamped
// with its sequence; a message at or below the applied sequence changes
// nothing (skipped, "duplicate"). A message that cannot be decoded, whose
// model version is not the one served, or whose records fail validation
// is counted, logged with its sequence and skipped (its sequence is stored
// so it is not read again); the lane goes on with the next one. A store
// write that fails is retried (LogApplierOptions::store_retries) before it
// is skipped the same way. When the model is replaced (a reload), each
// lane starts again from the new model's applied sequence.
//
// Metrics (lane = "users" | "items"):
//   embsum_write_log_applied_sequence{lane}   last sequence applied
//   embsum_write_log_lag_messages{lane}       messages in the log not yet
//                                             applied (last known)
//   embsum_write_log_lag_seconds{lane}        seconds since the lane was
//                                             last seen caught up (0 while
//                                             it is; grows while NATS is
//                                             unreachable)
//   embsum_write_log_apply_delay_seconds{lane}  histogram: publish to
//                                             applied, per message
//   embsum_write_log_messages_total{lane,result,reason}  result applied |
//                                             skipped | failed
//
// Thread-safety: caught_up() and WaitCaughtUp() are safe from any thread.
#ifndef EMBSUM_SERVER_LOG_APPLIER_H_
#define EMBSUM_SERVER_LOG_APPLIER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "metrics/metrics.h"
#include "server/ranker_core.h"
#include "server/serving_model.h"
#include "server/write_log.h"

namespace embsum::server {

struct LogApplierOptions {
  // caught_up() turns true (for good) once every lane has been at most this
  // many messages behind the log at one moment (--write_log_serving_lag).
  uint64_t serving_lag_messages = 0;
  // Attempts of a store write before the message is skipped as failed.
  int store_retries = 3;
  // Called once, from a lane thread, when caught_up() turns true.
  std::function<void()> on_caught_up;
};

class LogApplier {
 public:
  // Starts the lanes. Everything must outlive the applier; `model` returns
  // the model in service (ModelSlot::Current). registry may be null.
  LogApplier(const LogApplierOptions& options, WriteLog* log,
             const RankerCore* core,
             std::function<std::shared_ptr<const ServingModel>()> model,
             metrics::Registry* registry);
  // Stops the lanes (a message being applied finishes first).
  ~LogApplier();
  LogApplier(const LogApplier&) = delete;
  LogApplier& operator=(const LogApplier&) = delete;

  bool caught_up() const;
  // True once caught_up(), false when `timeout` passes first.
  bool WaitCaughtUp(absl::Duration timeout) const;

 private:
  class Lane;
  struct Families {
    metrics::Family<metrics::Gauge>* applied = nullptr;
    metrics::Family<metrics::Gauge>* lag_messages = nullptr;
    metrics::Family<metrics::Gauge>* lag_seconds = nullptr;
    metrics::Family<metrics::Histogram>* delay = nullptr;
    metrics::Family<metrics::Counter>* messages = nullptr;
  };
  void LaneCaughtUp();

  LogApplierOptions options_;
  std::unique_ptr<Families> families_;
  mutable absl::Mutex mu_;
  int lanes_caught_up_ ABSL_GUARDED_BY(mu_) = 0;
  bool caught_up_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Lane>> lanes_;
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_LOG_APPLIER_H_
