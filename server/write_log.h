// The write log (docs/operations.md "Writes through the log"): the admin
// RPCs publish each call to a NATS JetStream stream and answer after
// JetStream's publish ack (the write is then stored on a quorum of the
// stream's replicas); every server applies the log (server/log_applier.h).
//
// Subjects, for stream S: S.users.<shard> (user upserts of one shard),
// S.items (item upserts and deletes), S.parts (the parts of calls larger
// than one message; proto/embsum/v1/write_log.proto says how a commit names
// them).
//
// Thread-safety: every method is safe to call concurrently (the NATS C
// client's connection and JetStream context are).
#ifndef EMBSUM_SERVER_WRITE_LOG_H_
#define EMBSUM_SERVER_WRITE_LOG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "embsum/v1/ranking.pb.h"
#include "embsum/v1/write_log.pb.h"

// The NATS C client's types (nats/nats.h), kept out of this header.
struct __natsConnection;
struct __jsCtx;

namespace embsum::server {

class RankerCore;

struct WriteLogOptions {
  // NATS server URLs (nats://host:port); the client fails over between them.
  std::vector<std::string> servers;
  // The JetStream stream; also the first token of its subjects.
  std::string stream = "EMBSUM";
  // Replicas of the stream when this server creates it (an existing stream
  // is used as it is). A single NATS node only takes 1.
  int replicas = 3;
  // How long a write waits for JetStream's ack before it fails UNAVAILABLE.
  absl::Duration publish_timeout = absl::Seconds(5);
  // Largest message published; larger calls are split into parts and a
  // commit. 0: the NATS server's max_payload.
  size_t max_message_bytes = 0;
};

// Parses "nats://h1:4222,nats://h2:4222" (the --write_log flag).
absl::StatusOr<std::vector<std::string>> ParseWriteLogServers(
    const std::string& flag);

class WriteLog {
 public:
  // Connects in the background: returns at once even when no NATS server
  // is up (publishes then fail UNAVAILABLE until one is). Errors:
  // InvalidArgument (no servers, bad stream name).
  static absl::StatusOr<std::unique_ptr<WriteLog>> Connect(
      const WriteLogOptions& options);
  ~WriteLog();
  WriteLog(const WriteLog&) = delete;
  WriteLog& operator=(const WriteLog&) = delete;

  const WriteLogOptions& options() const { return options_; }
  bool connected() const;

  // Creates the stream (subjects S.>, file storage, options().replicas)
  // unless it exists. Unavailable while NATS is unreachable.
  absl::Status EnsureStream();

  // Publishes one call (model_version and one write set) on `subject`,
  // as one message or as parts plus a commit, and returns the stream
  // sequence of the message that commits it once JetStream acknowledged
  // it. Unavailable at once when not connected, or after publish_timeout
  // without an ack (the write may then be in the log or not; a retry is
  // safe, every write is idempotent). InvalidArgument when one record
  // alone is larger than a message.
  absl::StatusOr<uint64_t> Publish(const std::string& subject,
                                   const v1::LogWrite& write);

  // The stream's first sequence still stored (0 for an empty stream):
  // messages below it were removed by the stream's limits or a purge.
  absl::StatusOr<uint64_t> FirstSequence();

  // The payload of the stream message `sequence` (the parts of a commit).
  // NotFound when the stream no longer has it; Unavailable when NATS is
  // unreachable.
  absl::StatusOr<std::string> ReadMessage(uint64_t sequence);

  std::string UsersSubject(uint32_t shard) const;
  std::string ItemsSubject() const;
  std::string PartsSubject() const;

  // For the applier's subscriptions.
  __natsConnection* connection() const { return connection_; }
  __jsCtx* jetstream() const { return js_; }

 private:
  explicit WriteLog(WriteLogOptions options) : options_(std::move(options)) {}
  absl::StatusOr<uint64_t> PublishOne(const std::string& subject,
                                      const std::string& payload,
                                      const std::string& model_version);
  size_t MaxMessageBytes() const;

  WriteLogOptions options_;
  __natsConnection* connection_ = nullptr;
  __jsCtx* js_ = nullptr;
};

// Releases the NATS client library's global state (its threads and
// buffers) once every WriteLog is destroyed; call at most once, at exit.
void CloseWriteLogLibrary();

// The admin RPCs with a write log: validate the whole call against the
// model in service exactly as without a log (RankerCore::Check*; nothing is
// published when it fails), fill in each record's model_version, publish,
// and set the response's log_sequence. accepted counts the records; deleted
// counts the ids live on this server when the call was validated (the
// replicas apply the delete from the log).
absl::Status PublishUsers(const RankerCore& core, WriteLog& log,
                          const std::vector<v1::UserRecord>& records,
                          v1::UpsertResponse* response);
absl::Status PublishItems(const RankerCore& core, WriteLog& log,
                          const std::vector<v1::ItemRecord>& records,
                          v1::UpsertResponse* response);
absl::Status PublishDeleteItems(const RankerCore& core, WriteLog& log,
                                const v1::DeleteItemsRequest& request,
                                v1::DeleteItemsResponse* response);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_WRITE_LOG_H_
