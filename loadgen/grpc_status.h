// grpc::Status -> absl::Status for the clients in loadgen/ (the codes share
// one numbering). Header-only; thread-safe: stateless.
#ifndef EMBSUM_LOADGEN_GRPC_STATUS_H_
#define EMBSUM_LOADGEN_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace embsum::loadgen {

inline absl::StatusCode FromGrpcCode(grpc::StatusCode code) {
  return static_cast<absl::StatusCode>(code);
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(FromGrpcCode(status.error_code()),
                      status.error_message());
}

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_GRPC_STATUS_H_
