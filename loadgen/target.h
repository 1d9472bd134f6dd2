// What the load drivers send requests to. A Target starts request number i of
// a RequestPool asynchronously and reports its status code when it ends.
#ifndef EMBSUM_LOADGEN_TARGET_H_
#define EMBSUM_LOADGEN_TARGET_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loadgen/request_source.h"
#include "loadgen/tls.h"

namespace embsum::loadgen {

// Called exactly once per Start(), on a thread owned by the target, never
// inside Start() itself (so a driver may call Start() again from `done`).
// response_bytes: size of the response message (0 on errors).
using Completion =
    std::function<void(absl::StatusCode code, size_t response_bytes)>;

// Thread-safety: Start() may be called from any thread, concurrently, and
// from inside a Completion.
class Target {
 public:
  virtual ~Target() = default;
  // Number of requests the target can send; Start() takes an index below it.
  virtual size_t request_count() const = 0;
  virtual void Start(size_t request_index, Completion done) = 0;
};

struct GrpcTargetOptions {
  std::string address;  // HOST:PORT
  // Separate HTTP/2 connections; requests go round-robin over them. One
  // connection serializes all frames through one server reader, several
  // spread them over the server's pollers like independent clients do.
  int channels = 4;
  // Completion-queue threads in the client (each owns one queue). One keeps
  // up with tens of thousands of calls per second; more only steal CPU from
  // a server on the same machine.
  int threads = 1;
  // Per-call deadline; calls past it end as DEADLINE_EXCEEDED.
  absl::Duration deadline = absl::Seconds(10);
  // How long the constructor waits for every channel to connect.
  absl::Duration connect_timeout = absl::Seconds(10);
  TlsClientOptions tls;  // plaintext unless tls.enabled
};

// Sends the pool's pre-serialized payloads to pool.method through a generic
// stub (no per-call serialization in the client) over plaintext or TLS
// channels.
// Connects every channel before returning; Unavailable when one does not
// connect within connect_timeout. `pool` must outlive the target.
absl::StatusOr<std::unique_ptr<Target>> MakeGrpcTarget(
    const GrpcTargetOptions& options, const RequestPool& pool);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_TARGET_H_
