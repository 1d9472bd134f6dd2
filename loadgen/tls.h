// TLS for the loadgen's clients and the echo server: PEM files in,
// gRPC credentials out. Thread-safety: stateless functions.
#ifndef EMBSUM_LOADGEN_TLS_H_
#define EMBSUM_LOADGEN_TLS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace embsum::loadgen {

struct TlsClientOptions {
  bool enabled = false;  // false: plaintext, the other fields are ignored
  std::string ca_cert;   // PEM roots that sign the server; empty = system
  std::string cert;      // PEM client certificate (mTLS), with key
  std::string key;
  // Name to verify the server certificate against instead of the target
  // host (for a cert issued to "localhost" but reached as 127.0.0.1).
  std::string server_name;
};

struct TlsServerOptions {
  std::string cert;  // PEM server certificate; empty = plaintext
  std::string key;
  std::string client_ca;  // PEM roots; set = require client certs (mTLS)
};

// Errors name the file that cannot be read, or a cert without its key.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsClientOptions& options);
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerOptions& options);

// Adds the SSL target-name override to `args` when TLS asks for one.
void ApplyTlsChannelArgs(const TlsClientOptions& options,
                         grpc::ChannelArguments& args);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_TLS_H_
