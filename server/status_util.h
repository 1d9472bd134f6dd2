// Status conversions at the service edge (same code set everywhere):
// scoring::Status -> absl::Status -> grpc::Status. Thread-safe: stateless.
#ifndef EMBSUM_SERVER_STATUS_UTIL_H_
#define EMBSUM_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include <string_view>

#include "absl/status/status.h"
#include "scoring/status.h"

namespace embsum::server {

absl::Status ToAbslStatus(const scoring::Status& status);
grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "NOT_FOUND", ...: the grpc_code label of grpc_server_handled_total.
std::string_view GrpcCodeName(grpc::StatusCode code);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_STATUS_UTIL_H_
