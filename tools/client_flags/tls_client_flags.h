// The TLS flags every client tool takes (--tls, --tls_ca_cert, --tls_cert,
// --tls_key, --tls_server_name), defined once. Linking this library defines
// the flags; call TlsClientOptionsFromFlags after absl::ParseCommandLine.
// Thread-safe once the flags are parsed.
#ifndef EMBSUM_TOOLS_CLIENT_FLAGS_TLS_CLIENT_FLAGS_H_
#define EMBSUM_TOOLS_CLIENT_FLAGS_TLS_CLIENT_FLAGS_H_

#include "loadgen/tls.h"

namespace embsum::tools {

// TLS is on when --tls is set or any --tls_* file or name is given.
loadgen::TlsClientOptions TlsClientOptionsFromFlags();

}  // namespace embsum::tools

#endif  // EMBSUM_TOOLS_CLIENT_FLAGS_TLS_CLIENT_FLAGS_H_
