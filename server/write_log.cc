#include "server/write_log.h"

#include <nats/nats.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "server/ranker_core.h"

namespace embsum::server {
namespace {

// Header naming the model version of a message's embeddings (also in the
// payload); for people reading the stream with the nats CLI.
constexpr char kModelVersionHeader[] = "Embsum-Model-Version";
// Room left in a message for its headers and the protocol.
constexpr size_t kMessageOverhead = 4096;

std::string NatsError(natsStatus s, jsErrCode code) {
  std::string text = natsStatus_GetText(s);
  if (code != 0) absl::StrAppend(&text, " (JetStream error ", code, ")");
  return text;
}

// Appends parts of `write` (whose one write set is `records`) of at most
// `limit` bytes each to `parts`.
template <typename Records, typename Mutable>
absl::Status SplitRecords(const Records& records, size_t limit,
                          Mutable mutable_set,
                          std::vector<v1::LogWrite>* parts) {
  v1::LogWrite part;
  size_t bytes = 0;
  for (int i = 0; i < records.size(); ++i) {
    size_t size;
    if constexpr (std::is_same_v<std::decay_t<decltype(records[i])>,
                                 std::string>) {
      size = records[i].size() + 8;
    } else {
      size = records[i].ByteSizeLong() + 8;
    }
    if (size > limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "record ", i, " takes ", size, " bytes, more than the write log's ",
          limit, "-byte messages (NATS max_payload less headers)"));
    }
    if (bytes + size > limit && bytes > 0) {
      parts->push_back(std::move(part));
      part = v1::LogWrite();
      bytes = 0;
    }
    *mutable_set(&part)->Add() = records[i];
    bytes += size;
  }
  if (bytes > 0) parts->push_back(std::move(part));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseWriteLogServers(
    const std::string& flag) {
  std::vector<std::string> servers;
  for (absl::string_view url : absl::StrSplit(flag, ',', absl::SkipEmpty())) {
    if (!absl::StartsWith(url, "nats://") || url.size() <= 7) {
      return absl::InvalidArgumentError(
          absl::StrCat("--write_log: '", url,
                       "' is not a NATS URL (want nats://HOST:PORT)"));
    }
    servers.emplace_back(url);
  }
  if (servers.empty()) {
    return absl::InvalidArgumentError(
        "--write_log: no NATS server given (want nats://HOST:PORT,...)");
  }
  return servers;
}

absl::StatusOr<std::unique_ptr<WriteLog>> WriteLog::Connect(
    const WriteLogOptions& options) {
  if (options.servers.empty()) {
    return absl::InvalidArgumentError("write log: no NATS server given");
  }
  if (options.stream.empty() ||
      options.stream.find_first_of(".*> \t") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--write_log_stream '", options.stream,
        "' is not a stream name (non-empty, no '.', '*', '>' or spaces)"));
  }
  if (options.replicas < 1 || options.replicas > 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--write_log_replicas=", options.replicas, ": want 1 to 5"));
  }
  std::unique_ptr<WriteLog> log(new WriteLog(options));
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  std::vector<const char*> urls;
  for (const std::string& url : options.servers) urls.push_back(url.c_str());
  if (s == NATS_OK) {
    s = natsOptions_SetServers(opts, urls.data(),
                               static_cast<int>(urls.size()));
  }
  if (s == NATS_OK) s = natsOptions_SetName(opts, "embsum-server");
  // Reconnect for ever, quickly; a publish checks the connection first, so
  // nothing waits in the reconnect buffer.
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 200);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 1000);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(opts, 1000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts, 2);
  if (s == NATS_OK) {
    s = natsOptions_SetRetryOnFailedConnect(
        opts, true, [](natsConnection*, void*) {}, nullptr);
  }
  if (s == NATS_OK) {
    s = natsConnection_Connect(&log->connection_, opts);
    if (s == NATS_NOT_YET_CONNECTED) s = NATS_OK;
  }
  natsOptions_Destroy(opts);
  if (s != NATS_OK) {
    return absl::UnavailableError(
        absl::StrCat("write log: cannot set up the NATS connection: ",
                     natsStatus_GetText(s)));
  }
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = absl::ToInt64Milliseconds(options.publish_timeout);
  s = natsConnection_JetStream(&log->js_, log->connection_, &js_options);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "write log: cannot open JetStream: ", natsStatus_GetText(s)));
  }
  return log;
}

WriteLog::~WriteLog() {
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (connection_ != nullptr) {
    natsConnection_Close(connection_);
    natsConnection_Destroy(connection_);
  }
}

bool WriteLog::connected() const {
  return connection_ != nullptr &&
         natsConnection_Status(connection_) == NATS_CONN_STATUS_CONNECTED;
}

std::string WriteLog::UsersSubject(uint32_t shard) const {
  return absl::StrCat(options_.stream, ".users.", shard);
}
std::string WriteLog::ItemsSubject() const {
  return absl::StrCat(options_.stream, ".items");
}
std::string WriteLog::PartsSubject() const {
  return absl::StrCat(options_.stream, ".parts");
}

absl::Status WriteLog::EnsureStream() {
  if (!connected()) {
    return absl::UnavailableError("write log: no NATS server reachable");
  }
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetStreamInfo(&info, js_, options_.stream.c_str(), nullptr, &code);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(info);
    return absl::OkStatus();
  }
  if (s != NATS_NOT_FOUND) {
    return absl::UnavailableError(absl::StrCat(
        "write log: stream ", options_.stream, ": ", NatsError(s, code)));
  }
  const std::string subjects = absl::StrCat(options_.stream, ".>");
  const char* subject_list[] = {subjects.c_str()};
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = options_.stream.c_str();
  config.Subjects = subject_list;
  config.SubjectsLen = 1;
  config.Storage = js_FileStorage;
  config.Replicas = options_.replicas;
  code = static_cast<jsErrCode>(0);
  s = js_AddStream(&info, js_, &config, nullptr, &code);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(info);
    return absl::OkStatus();
  }
  // Another server may have created it meanwhile.
  code = static_cast<jsErrCode>(0);
  if (js_GetStreamInfo(&info, js_, options_.stream.c_str(), nullptr, &code) ==
      NATS_OK) {
    jsStreamInfo_Destroy(info);
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat(
      "write log: cannot create stream ", options_.stream, " with ",
      options_.replicas, " replicas: ", NatsError(s, code)));
}

size_t WriteLog::MaxMessageBytes() const {
  size_t limit = options_.max_message_bytes;
  const int64_t payload =
      connection_ != nullptr ? natsConnection_GetMaxPayload(connection_) : 0;
  if (payload > 0 && (limit == 0 || limit > static_cast<size_t>(payload))) {
    limit = static_cast<size_t>(payload);
  }
  if (limit == 0) limit = size_t{1} << 20;
  return limit > 2 * kMessageOverhead ? limit - kMessageOverhead : limit / 2;
}

absl::StatusOr<uint64_t> WriteLog::PublishOne(
    const std::string& subject, const std::string& payload,
    const std::string& model_version) {
  if (!connected()) {
    return absl::UnavailableError(
        "write log: no NATS server reachable; nothing was written");
  }
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(),
                                static_cast<int>(payload.size()));
  if (s == NATS_OK) {
    s = natsMsgHeader_Set(msg, kModelVersionHeader, model_version.c_str());
  }
  jsPubOptions pub;
  jsPubOptions_Init(&pub);
  pub.MaxWait = absl::ToInt64Milliseconds(options_.publish_timeout);
  pub.ExpectStream = options_.stream.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (s == NATS_OK) s = js_PublishMsg(&ack, js_, msg, &pub, &code);
  natsMsg_Destroy(msg);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "write log: ", subject, " not acknowledged: ", NatsError(s, code),
        s == NATS_TIMEOUT ? "; the write may or may not be in the log, and "
                            "retrying it is safe"
                          : ""));
  }
  const uint64_t sequence = ack->Sequence;
  jsPubAck_Destroy(ack);
  return sequence;
}

absl::StatusOr<uint64_t> WriteLog::Publish(const std::string& subject,
                                           const v1::LogWrite& write) {
  const size_t limit = MaxMessageBytes();
  if (write.ByteSizeLong() <= limit) {
    return PublishOne(subject, write.SerializeAsString(),
                      write.model_version());
  }
  std::vector<v1::LogWrite> parts;
  switch (write.write_case()) {
    case v1::LogWrite::kUsers:
      RETURN_IF_ERROR(SplitRecords(
          write.users().records(), limit,
          [](v1::LogWrite* w) { return w->mutable_users()->mutable_records(); },
          &parts));
      break;
    case v1::LogWrite::kItems:
      RETURN_IF_ERROR(SplitRecords(
          write.items().records(), limit,
          [](v1::LogWrite* w) { return w->mutable_items()->mutable_records(); },
          &parts));
      break;
    case v1::LogWrite::kDeleteItems:
      RETURN_IF_ERROR(SplitRecords(
          write.delete_items().item_ids(), limit,
          [](v1::LogWrite* w) {
            return w->mutable_delete_items()->mutable_item_ids();
          },
          &parts));
      break;
    case v1::LogWrite::WRITE_NOT_SET:
      return absl::InvalidArgumentError("write log: empty write");
  }
  v1::LogWrite commit;
  commit.set_model_version(write.model_version());
  for (v1::LogWrite& part : parts) {
    part.set_model_version(write.model_version());
    ASSIGN_OR_RETURN(const uint64_t sequence,
                     PublishOne(PartsSubject(), part.SerializeAsString(),
                                write.model_version()));
    commit.add_part_sequences(sequence);
  }
  return PublishOne(subject, commit.SerializeAsString(), write.model_version());
}

absl::StatusOr<uint64_t> WriteLog::FirstSequence() {
  if (!connected()) {
    return absl::UnavailableError("write log: no NATS server reachable");
  }
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetStreamInfo(&info, js_, options_.stream.c_str(), nullptr, &code);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "write log: stream ", options_.stream, ": ", NatsError(s, code)));
  }
  const uint64_t first = info->State.Msgs > 0 ? info->State.FirstSeq : 0;
  jsStreamInfo_Destroy(info);
  return first;
}

absl::StatusOr<std::string> WriteLog::ReadMessage(uint64_t sequence) {
  if (!connected()) {
    return absl::UnavailableError("write log: no NATS server reachable");
  }
  natsMsg* msg = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetMsg(&msg, js_, options_.stream.c_str(), sequence, nullptr, &code);
  if (s == NATS_NOT_FOUND) {
    return absl::NotFoundError(
        absl::StrCat("write log: stream message ", sequence, " is gone"));
  }
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "write log: read message ", sequence, ": ", NatsError(s, code)));
  }
  std::string data(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
  natsMsg_Destroy(msg);
  return data;
}

void CloseWriteLogLibrary() { nats_CloseAndWait(2000); }

absl::Status PublishUsers(const RankerCore& core, WriteLog& log,
                          const std::vector<v1::UserRecord>& records,
                          v1::UpsertResponse* response) {
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model,
                   core.CurrentModel());
  RETURN_IF_ERROR(core.CheckUsers(*model, records));
  if (records.empty()) {
    response->set_accepted(0);
    return absl::OkStatus();
  }
  const std::string& version = model->manifest().model_version;
  v1::LogWrite write;
  write.set_model_version(version);
  for (const v1::UserRecord& r : records) {
    v1::UserRecord* copy = write.mutable_users()->add_records();
    *copy = r;
    copy->set_model_version(version);
  }
  ASSIGN_OR_RETURN(const uint64_t sequence,
                   log.Publish(log.UsersSubject(model->shard().shard), write));
  response->set_accepted(records.size());
  response->set_log_sequence(sequence);
  return absl::OkStatus();
}

absl::Status PublishItems(const RankerCore& core, WriteLog& log,
                          const std::vector<v1::ItemRecord>& records,
                          v1::UpsertResponse* response) {
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model,
                   core.CurrentModel());
  RETURN_IF_ERROR(core.CheckItems(*model, records));
  if (records.empty()) {
    response->set_accepted(0);
    return absl::OkStatus();
  }
  const std::string& version = model->manifest().model_version;
  v1::LogWrite write;
  write.set_model_version(version);
  for (const v1::ItemRecord& r : records) {
    v1::ItemRecord* copy = write.mutable_items()->add_records();
    *copy = r;
    copy->set_model_version(version);
  }
  ASSIGN_OR_RETURN(const uint64_t sequence,
                   log.Publish(log.ItemsSubject(), write));
  response->set_accepted(records.size());
  response->set_log_sequence(sequence);
  return absl::OkStatus();
}

absl::Status PublishDeleteItems(const RankerCore& core, WriteLog& log,
                                const v1::DeleteItemsRequest& request,
                                v1::DeleteItemsResponse* response) {
  if (request.item_ids().empty()) {
    response->set_deleted(0);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model,
                   core.CurrentModel());
  const std::shared_ptr<const store::ItemSnapshot> items =
      model->items().Current();
  uint64_t live = 0;
  for (const std::string& id : request.item_ids()) {
    if (items->FindRow(id)) ++live;
  }
  v1::LogWrite write;
  write.set_model_version(model->manifest().model_version);
  *write.mutable_delete_items()->mutable_item_ids() = request.item_ids();
  ASSIGN_OR_RETURN(const uint64_t sequence,
                   log.Publish(log.ItemsSubject(), write));
  response->set_deleted(live);
  response->set_log_sequence(sequence);
  return absl::OkStatus();
}

}  // namespace embsum::server
