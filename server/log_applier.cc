#include "server/log_applier.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace embsum::server {
namespace {

enum class LaneKind { kUsers, kItems };

const char* LaneName(LaneKind kind) {
  return kind == LaneKind::kUsers ? "users" : "items";
}

double NowSeconds() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

class LogApplier::Lane {
 public:
  Lane(LogApplier* owner, LaneKind kind, WriteLog* log, const RankerCore* core,
       std::function<std::shared_ptr<const ServingModel>()> model,
       const Families* families)
      : owner_(owner),
        kind_(kind),
        log_(log),
        core_(core),
        model_(std::move(model)),
        families_(families) {
    const std::string lane = LaneName(kind);
    if (families != nullptr) {
      applied_seq_ = &families->applied->WithLabels({lane});
      lag_messages_ = &families->lag_messages->WithLabels({lane});
      lag_seconds_ = &families->lag_seconds->WithLabels({lane});
      delay_ = &families->delay->WithLabels({lane});
    }
    thread_ = std::thread([this] { Run(); });
  }

  ~Lane() {
    stopping_.store(true);
    thread_.join();
    if (sub_ != nullptr) natsSubscription_Destroy(sub_);
  }

 private:
  // The sequence this lane has applied on `model`.
  // At least the sequence the artifact says it includes.
  uint64_t Applied(const ServingModel& model) const {
    return std::max(model.manifest().log_sequence,
                    kind_ == LaneKind::kUsers
                        ? model.users().applied_log_sequence()
                        : model.items().applied_log_sequence());
  }

  void Count(const char* result, const std::string& reason) {
    if (families_ == nullptr) return;
    families_->messages->WithLabels({LaneName(kind_), result, reason})
        .Increment();
  }

  // Sleeps up to `d`, less when stopping.
  void Pause(absl::Duration d) {
    const absl::Time end = absl::Now() + d;
    while (!stopping_.load() && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  void DropSubscription() {
    if (sub_ != nullptr) natsSubscription_Destroy(sub_);
    sub_ = nullptr;
    last_consumer_sequence_ = 0;
  }

  absl::Status Subscribe(const ServingModel& model) {
    DropSubscription();
    if (!log_->connected()) {
      return absl::UnavailableError("no NATS server reachable");
    }
    if (absl::Status s = log_->EnsureStream(); !s.ok()) return s;
    const std::string subject = kind_ == LaneKind::kUsers
                                    ? log_->UsersSubject(model.shard().shard)
                                    : log_->ItemsSubject();
    const uint64_t start = Applied(model) + 1;
    // Sequences this lane has not read that the stream no longer holds
    // (its limits or a purge removed them; some may have been this lane's):
    // they cannot be applied; say so (the replica needs a newer artifact)
    // and go on from what is left.
    if (absl::StatusOr<uint64_t> first = log_->FirstSequence();
        first.ok() && *first > start && !gap_reported_) {
      gap_reported_ = true;
      Count("failed", "truncated_log");
      LogEvent("error", "write_log_truncated",
               {{"lane", LaneName(kind_)},
                {"from_sequence", std::to_string(start)},
                {"first_in_stream", std::to_string(*first)},
                {"message",
                 "the stream no longer holds sequences from from_sequence to "
                 "first_in_stream - 1, and this lane may have missed writes "
                 "among them; load an artifact whose manifest log_sequence "
                 "is at least first_in_stream - 1"}});
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = log_->options().stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start;
    so.Config.Heartbeat = absl::ToInt64Nanoseconds(absl::Seconds(1));
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_SubscribeSync(&sub_, log_->jetstream(), subject.c_str(),
                                    nullptr, &so, &code);
    if (s != NATS_OK) {
      sub_ = nullptr;
      return absl::UnavailableError(
          absl::StrCat("subscribe to ", subject, " from ", start, ": ",
                       natsStatus_GetText(s),
                       code != 0 ? absl::StrCat(" (", code, ")") : ""));
    }
    LogEvent("info", "write_log_subscribed",
             {{"lane", LaneName(kind_)},
              {"subject", subject},
              {"from_sequence", std::to_string(start)},
              {"model_version", model.manifest().model_version}});
    return absl::OkStatus();
  }

  // Asks the consumer how far behind the lane is; updates pending_ and,
  // when nothing is left, the moment it was last caught up.
  void Probe() {
    if (sub_ == nullptr || !log_->connected()) return;
    jsConsumerInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (natsSubscription_GetConsumerInfo(&info, sub_, nullptr, &code) !=
        NATS_OK) {
      ++probe_failures_;
      return;
    }
    probe_failures_ = 0;
    int buffered = 0;
    natsSubscription_GetPending(sub_, &buffered, nullptr);
    pending_ = info->NumPending + static_cast<uint64_t>(std::max(0, buffered));
    // Everything the consumer delivered has been handled here (not still
    // on its way from a consumer leader on another node).
    const bool delivered_handled =
        info->Delivered.Consumer <= last_consumer_sequence_;
    jsConsumerInfo_Destroy(info);
    if (!delivered_handled) return;
    if (pending_ == 0) {
      MarkCaughtUp();
    } else {
      NoteProgress();
    }
  }

  void MarkCaughtUp() {
    caught_up_at_ = NowSeconds();
    NoteProgress();
  }

  // Reports the lane (once) when it is within the serving lag.
  void NoteProgress() {
    if (!reported_ && pending_ <= owner_->options_.serving_lag_messages) {
      reported_ = true;
      owner_->LaneCaughtUp();
    }
  }

  void UpdateGauges(const ServingModel* model) {
    if (applied_seq_ == nullptr) return;
    if (model != nullptr)
      applied_seq_->Set(static_cast<double>(Applied(*model)));
    lag_messages_->Set(static_cast<double>(pending_));
    lag_seconds_->Set(caught_up_at_ > 0
                          ? std::max(0.0, NowSeconds() - caught_up_at_)
                          : NowSeconds() - started_at_);
  }

  // Stores `sequence` alone (a message skipped for good).
  void StoreSequence(const ServingModel& model, uint64_t sequence) {
    const store::WriteStamp stamp{sequence};
    absl::Status s = kind_ == LaneKind::kUsers
                         ? RankerCore::ApplyUsers(model, {}, stamp)
                         : RankerCore::ApplyItems(model, {}, stamp);
    if (!s.ok()) {
      LogEvent("error", "write_log_sequence_not_stored",
               {{"lane", LaneName(kind_)},
                {"sequence", std::to_string(sequence)},
                {"message", std::string(s.message())}});
    }
  }

  void Skip(const ServingModel& model, uint64_t sequence, const char* result,
            const std::string& reason, const std::string& detail) {
    Count(result, reason);
    LogEvent("warning", "write_log_message_skipped",
             {{"lane", LaneName(kind_)},
              {"sequence", std::to_string(sequence)},
              {"result", result},
              {"reason", reason},
              {"message", detail}});
    StoreSequence(model, sequence);
  }

  // Reads the parts a commit names into `write`. Unavailable: try again
  // later; other errors: the message is skipped.
  absl::Status Assemble(v1::LogWrite* write) {
    v1::LogWrite whole;
    whole.set_model_version(write->model_version());
    for (uint64_t part_sequence : write->part_sequences()) {
      absl::StatusOr<std::string> data = log_->ReadMessage(part_sequence);
      if (!data.ok()) return data.status();
      v1::LogWrite part;
      if (!part.ParseFromString(*data)) {
        return absl::DataLossError(
            absl::StrCat("part ", part_sequence, " does not decode"));
      }
      if (part.model_version() != write->model_version()) {
        return absl::DataLossError(
            absl::StrCat("part ", part_sequence, " is of model version '",
                         part.model_version(), "', its commit of '",
                         write->model_version(), "'"));
      }
      switch (part.write_case()) {
        case v1::LogWrite::kUsers:
          whole.mutable_users()->mutable_records()->MergeFrom(
              part.users().records());
          break;
        case v1::LogWrite::kItems:
          whole.mutable_items()->mutable_records()->MergeFrom(
              part.items().records());
          break;
        case v1::LogWrite::kDeleteItems:
          whole.mutable_delete_items()->mutable_item_ids()->MergeFrom(
              part.delete_items().item_ids());
          break;
        case v1::LogWrite::WRITE_NOT_SET:
          return absl::DataLossError(
              absl::StrCat("part ", part_sequence, " holds no write"));
      }
      if (whole.write_case() != part.write_case()) {
        return absl::DataLossError(absl::StrCat(
            "part ", part_sequence, " mixes writes of different kinds"));
      }
    }
    *write = std::move(whole);
    return absl::OkStatus();
  }

  // false: could not be handled now (NATS unreachable for a commit's
  // parts); the lane resubscribes and reads it again.
  bool Handle(const ServingModel& model, natsMsg* msg) {
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
      Count("failed", "metadata");
      return true;
    }
    const uint64_t sequence = meta->Sequence.Stream;
    last_consumer_sequence_ = meta->Sequence.Consumer;
    const double published = static_cast<double>(meta->Timestamp) * 1e-9;
    pending_ = meta->NumPending;
    jsMsgMetaData_Destroy(meta);
    if (sequence <= Applied(model)) {
      Count("skipped", "duplicate");
      return true;
    }
    v1::LogWrite write;
    if (!write.ParseFromArray(natsMsg_GetData(msg),
                              natsMsg_GetDataLength(msg))) {
      Skip(model, sequence, "failed", "decode",
           "the payload is not a LogWrite");
      return true;
    }
    const std::string& served = model.manifest().model_version;
    if (write.model_version() != served) {
      Skip(model, sequence, "skipped", "model_version",
           absl::StrCat("written for model version '",
                        write.model_version().substr(0, 256),
                        "', this server serves '", served, "'"));
      return true;
    }
    if (write.part_sequences_size() > 0) {
      absl::Status s = Assemble(&write);
      if (absl::IsUnavailable(s)) return false;
      if (!s.ok()) {
        Skip(model, sequence, "failed", "missing_part",
             std::string(s.message()));
        return true;
      }
    }
    const bool users = write.write_case() == v1::LogWrite::kUsers;
    if (users != (kind_ == LaneKind::kUsers) ||
        write.write_case() == v1::LogWrite::WRITE_NOT_SET) {
      Skip(model, sequence, "failed", "wrong_subject",
           "the write does not belong on this subject");
      return true;
    }
    std::vector<v1::UserRecord> user_records;
    std::vector<v1::ItemRecord> item_records;
    std::vector<std::string> delete_ids;
    absl::Status check;
    switch (write.write_case()) {
      case v1::LogWrite::kUsers:
        user_records.assign(write.users().records().begin(),
                            write.users().records().end());
        check = core_->CheckUsers(model, user_records);
        break;
      case v1::LogWrite::kItems:
        item_records.assign(write.items().records().begin(),
                            write.items().records().end());
        check = core_->CheckItems(model, item_records);
        break;
      default:
        delete_ids.assign(write.delete_items().item_ids().begin(),
                          write.delete_items().item_ids().end());
        break;
    }
    if (!check.ok()) {
      Skip(model, sequence, "failed", "invalid", std::string(check.message()));
      return true;
    }
    const store::WriteStamp stamp{sequence};
    absl::Status applied;
    for (int attempt = 0; attempt < std::max(1, owner_->options_.store_retries);
         ++attempt) {
      if (attempt > 0) Pause(absl::Milliseconds(100 << attempt));
      switch (write.write_case()) {
        case v1::LogWrite::kUsers:
          applied = RankerCore::ApplyUsers(model, user_records, stamp);
          break;
        case v1::LogWrite::kItems:
          applied = RankerCore::ApplyItems(model, item_records, stamp);
          break;
        default:
          applied = RankerCore::ApplyDelete(model, delete_ids, stamp).status();
          break;
      }
      if (applied.ok()) break;
    }
    if (!applied.ok()) {
      Skip(model, sequence, "failed", "store", std::string(applied.message()));
      return true;
    }
    Count("applied", write.write_case() == v1::LogWrite::kDeleteItems
                         ? "delete"
                         : "upsert");
    if (delay_ != nullptr)
      delay_->Observe(std::max(0.0, NowSeconds() - published));
    if (pending_ == 0) MarkCaughtUp();
    return true;
  }

  void Run() {
    uint64_t generation = 0;
    absl::Time last_probe = absl::InfinitePast();
    while (!stopping_.load()) {
      const std::shared_ptr<const ServingModel> model = model_();
      UpdateGauges(model.get());
      if (model == nullptr) {
        Pause(absl::Milliseconds(100));
        continue;
      }
      if (sub_ == nullptr || model->generation() != generation ||
          probe_failures_ >= 3) {
        probe_failures_ = 0;
        if (absl::Status s = Subscribe(*model); !s.ok()) {
          if (log_->connected()) {
            LogEvent("warning", "write_log_subscribe_failed",
                     {{"lane", LaneName(kind_)},
                      {"message", std::string(s.message())}});
          }
          Pause(absl::Milliseconds(500));
          continue;
        }
        generation = model->generation();
        Probe();
        last_probe = absl::Now();
      }
      natsMsg* msg = nullptr;
      const natsStatus s = natsSubscription_NextMsg(&msg, sub_, 100);
      if (s == NATS_TIMEOUT) {
        if (absl::Now() - last_probe > absl::Milliseconds(500)) {
          Probe();
          last_probe = absl::Now();
        }
        continue;
      }
      if (s != NATS_OK) {
        LogEvent(
            "warning", "write_log_consumer_lost",
            {{"lane", LaneName(kind_)}, {"status", natsStatus_GetText(s)}});
        DropSubscription();
        Pause(absl::Milliseconds(200));
        continue;
      }
      const bool done = Handle(*model, msg);
      natsMsg_Destroy(msg);
      if (done) NoteProgress();
      if (!done) {
        DropSubscription();
        Pause(absl::Milliseconds(500));
      }
    }
  }

  LogApplier* owner_;
  const LaneKind kind_;
  WriteLog* log_;
  const RankerCore* core_;
  std::function<std::shared_ptr<const ServingModel>()> model_;
  const Families* families_;
  metrics::Gauge* applied_seq_ = nullptr;
  metrics::Gauge* lag_messages_ = nullptr;
  metrics::Gauge* lag_seconds_ = nullptr;
  metrics::Histogram* delay_ = nullptr;
  // Lane thread only.
  natsSubscription* sub_ = nullptr;
  uint64_t pending_ = 0;
  // Consumer sequence of the last message handled on sub_.
  uint64_t last_consumer_sequence_ = 0;
  int probe_failures_ = 0;
  double caught_up_at_ = 0;
  const double started_at_ = NowSeconds();
  bool reported_ = false;
  bool gap_reported_ = false;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

LogApplier::LogApplier(
    const LogApplierOptions& options, WriteLog* log, const RankerCore* core,
    std::function<std::shared_ptr<const ServingModel>()> model,
    metrics::Registry* registry)
    : options_(options) {
  if (registry != nullptr) {
    families_ = std::make_unique<Families>();
    families_->applied =
        &registry->AddGauge("embsum_write_log_applied_sequence",
                            "Write log: last sequence applied", {"lane"});
    families_->lag_messages = &registry->AddGauge(
        "embsum_write_log_lag_messages",
        "Write log: messages not yet applied (last known)", {"lane"});
    families_->lag_seconds = &registry->AddGauge(
        "embsum_write_log_lag_seconds",
        "Write log: seconds since the lane was last seen caught up", {"lane"});
    families_->delay = &registry->AddHistogram(
        "embsum_write_log_apply_delay_seconds",
        "Write log: from publish to applied, per message", {"lane"},
        {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30,
         60});
    families_->messages = &registry->AddCounter(
        "embsum_write_log_messages_total",
        "Write log: messages by lane, result (applied, skipped, failed) and "
        "reason",
        {"lane", "result", "reason"});
  }
  for (LaneKind kind : {LaneKind::kUsers, LaneKind::kItems}) {
    lanes_.push_back(
        std::make_unique<Lane>(this, kind, log, core, model, families_.get()));
  }
}

LogApplier::~LogApplier() { lanes_.clear(); }

void LogApplier::LaneCaughtUp() {
  bool now = false;
  {
    absl::MutexLock lock(&mu_);
    if (++lanes_caught_up_ == 2 && !caught_up_) {
      caught_up_ = true;
      now = true;
    }
  }
  if (now) {
    LogEvent("info", "write_log_caught_up", {});
    if (options_.on_caught_up) options_.on_caught_up();
  }
}

bool LogApplier::caught_up() const {
  absl::MutexLock lock(&mu_);
  return caught_up_;
}

bool LogApplier::WaitCaughtUp(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&caught_up_), timeout);
}

}  // namespace embsum::server
