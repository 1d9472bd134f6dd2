#include "tools/client_flags/tls_client_flags.h"

#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(bool, tls, false, "connect with TLS (implied by the --tls_* files)");
ABSL_FLAG(std::string, tls_ca_cert, "",
          "PEM roots that sign the server certificate (default: system roots)");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate, for mTLS");
ABSL_FLAG(std::string, tls_key, "", "PEM key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "verify the server certificate against this name, not the host");

namespace embsum::tools {

loadgen::TlsClientOptions TlsClientOptionsFromFlags() {
  loadgen::TlsClientOptions tls;
  tls.ca_cert = absl::GetFlag(FLAGS_tls_ca_cert);
  tls.cert = absl::GetFlag(FLAGS_tls_cert);
  tls.key = absl::GetFlag(FLAGS_tls_key);
  tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  tls.enabled = absl::GetFlag(FLAGS_tls) || !tls.ca_cert.empty() ||
                !tls.cert.empty() || !tls.server_name.empty();
  return tls;
}

}  // namespace embsum::tools
