// embsum-echo-server: the gRPC floor for `embsum-loadgen --target_kind=echo`.
// Answers embsum.v1.Echo/Echo with a payload of the requested size and does
// nothing else. SIGTERM or SIGINT: stop accepting, finish calls, exit 0.
#include <csignal>
#include <cstdint>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/tool_flags.h"
#include "loadgen/echo_service.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50061",
          "HOST:PORT to serve on (port 0 picks a free port, printed at start)");

ABSL_FLAG(uint64_t, sweep_bytes, 0,
          "before each answer, read one byte per cache line of a buffer this "
          "large (e.g. twice the L2 size): the floor of a request whose work "
          "left the caches cold; the mean sweep time is printed at exit");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate (enables TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM roots for client certificates (requires mTLS)");

int main(int argc, char** argv) {
  embsum::ShowOwnFlagsInHelp();
  absl::SetProgramUsageMessage("embsum-echo-server --listen=HOST:PORT");
  absl::ParseCommandLine(argc, argv);
  // Block the stop signals in every thread (gRPC's inherit the mask) and
  // wait for them here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  const std::string listen = absl::GetFlag(FLAGS_listen);
  embsum::loadgen::TlsServerOptions tls;
  tls.cert = absl::GetFlag(FLAGS_tls_cert);
  tls.key = absl::GetFlag(FLAGS_tls_key);
  tls.client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  auto server = embsum::loadgen::EchoServer::Start(
      listen, tls, absl::GetFlag(FLAGS_sweep_bytes));
  if (!server.ok()) {
    std::cerr << "embsum-echo-server: " << server.status().message() << "\n";
    return 1;
  }
  std::cout << "embsum-echo-server: listening on port " << (*server)->port()
            << std::endl;
  int signal = 0;
  sigwait(&stop, &signal);
  std::cerr << "embsum-echo-server: signal " << signal << ", shutting down\n";
  (*server)->Shutdown();
  (*server)->Wait();
  if (absl::GetFlag(FLAGS_sweep_bytes) > 0) {
    const embsum::loadgen::SweepStats sweep = (*server)->sweep_stats();
    std::cout << "embsum-echo-server: swept "
              << absl::GetFlag(FLAGS_sweep_bytes) << " bytes before each of "
              << sweep.calls << " answers, mean_sweep_seconds="
              << (sweep.calls > 0 ? sweep.seconds / sweep.calls : 0.0)
              << std::endl;
  }
  return 0;
}
