// Runs embsum-server as a child process for tests: output goes to a log
// file, Start waits for the start-up log line and reads the bound ports
// from it. Not thread-safe.
#ifndef EMBSUM_TESTS_TOOLS_SERVER_SERVER_PROCESS_H_
#define EMBSUM_TESTS_TOOLS_SERVER_SERVER_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/server/test_support.h"

namespace embsum::testing {

class ServerProcess {
 public:
  // Starts `binary` with `args`; waits up to `timeout` for "event=start".
  // Error (with the log) when the process exits first or times out.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::string& log_path,
      std::chrono::seconds timeout = std::chrono::seconds(90)) {
    auto p = std::unique_ptr<ServerProcess>(new ServerProcess());
    p->log_path_ = log_path;
    p->pid_ = fork();
    if (p->pid_ < 0) return absl::InternalError("fork failed");
    if (p->pid_ == 0) {
      const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(binary.c_str()));
      for (const std::string& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string log = p->Log();
      const size_t at = log.find("event=start ");
      if (at != std::string::npos && log.find('\n', at) != std::string::npos) {
        const std::string line = log.substr(at, log.find('\n', at) - at);
        for (absl::string_view token : absl::StrSplit(line, ' ')) {
          const size_t eq = token.find('=');
          if (eq == absl::string_view::npos) continue;
          p->fields_[std::string(token.substr(0, eq))] =
              std::string(token.substr(eq + 1));
        }
        p->port_ = PortOf(p->fields_["listen"]);
        p->admin_port_ = PortOf(p->fields_["admin_listen"]);
        p->metrics_port_ = PortOf(p->fields_["metrics_listen"]);
        return p;
      }
      int status = 0;
      if (waitpid(p->pid_, &status, WNOHANG) == p->pid_) {
        p->pid_ = -1;
        return absl::FailedPreconditionError(
            absl::StrCat("embsum-server exited before starting:\n", log));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("embsum-server did not start:\n", p->Log()));
  }

  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  int port() const { return port_; }
  int admin_port() const { return admin_port_; }
  int metrics_port() const { return metrics_port_; }
  // key=value fields of the start-up line.
  const std::map<std::string, std::string>& start_fields() const {
    return fields_;
  }
  std::string Log() const { return ReadFileOrEmpty(log_path_); }

  void Signal(int signal) {
    if (pid_ > 0) kill(pid_, signal);
  }
  // Waits for exit: the exit code, or 128 + signal when killed.
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
  }

  // Runs `binary args` to completion (for start-up failures): exit code.
  static int Run(const std::string& binary,
                 const std::vector<std::string>& args,
                 const std::string& log_path) {
    std::string command = "'" + binary + "'";
    for (const std::string& a : args) command += " '" + a + "'";
    command += " > '" + log_path + "' 2>&1";
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  }

 private:
  ServerProcess() = default;
  static int PortOf(const std::string& address) {
    int port = 0;
    const size_t colon = address.rfind(':');
    if (colon != std::string::npos) {
      (void)absl::SimpleAtoi(address.substr(colon + 1), &port);
    }
    return port;
  }

  pid_t pid_ = -1;
  std::string log_path_;
  std::map<std::string, std::string> fields_;
  int port_ = 0, admin_port_ = 0, metrics_port_ = 0;
};

}  // namespace embsum::testing

#endif  // EMBSUM_TESTS_TOOLS_SERVER_SERVER_PROCESS_H_
