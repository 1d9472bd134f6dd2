#include "loadgen/tls.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace embsum::loadgen {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(flag, ": cannot read '", path, "'"));
  }
  std::ostringstream s;
  s << in.rdbuf();
  if (s.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", path, "' is not a PEM file"));
  }
  return s.str();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsClientOptions& options) {
  if (!options.enabled) return grpc::InsecureChannelCredentials();
  if (options.cert.empty() != options.key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key go together (client certificate for mTLS)");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_cert.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadPem(options.ca_cert, "--tls_ca_cert"));
  }
  if (!options.cert.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem(options.cert, "--tls_cert"));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(options.key, "--tls_key"));
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerOptions& options) {
  if (options.cert.empty() && options.key.empty()) {
    if (!options.client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.cert.empty() || options.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  grpc::SslServerCredentialsOptions ssl(
      options.client_ca.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(options.cert, "--tls_cert"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(options.key, "--tls_key"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!options.client_ca.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadPem(options.client_ca, "--tls_client_ca"));
  }
  return grpc::SslServerCredentials(ssl);
}

void ApplyTlsChannelArgs(const TlsClientOptions& options,
                         grpc::ChannelArguments& args) {
  if (options.enabled && !options.server_name.empty()) {
    args.SetSslTargetNameOverride(options.server_name);
  }
}

}  // namespace embsum::loadgen
