// Helpers for the store/ tests: temporary directories, small synthetic
// models, raw .npy writing with arbitrary headers, child processes.
#ifndef EMBSUM_TESTS_STORE_STORE_TEST_UTIL_H_
#define EMBSUM_TESTS_STORE_STORE_TEST_UTIL_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "datagen/synthetic_model.h"
#include "gtest/gtest.h"

extern char** environ;

namespace embsum::store::testing {

// A fresh directory under TEST_TMPDIR or /tmp, removed at destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern =
        std::string(base != nullptr ? base : "/tmp") + "/embsum-store-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) std::abort();
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const {
    return path_ + "/" + rel;
  }

 private:
  std::string path_;
};

inline datagen::SyntheticModelOptions SmallModel(const std::string& out_dir,
                                                 uint64_t seed = 1) {
  datagen::SyntheticModelOptions o;
  o.out_dir = out_dir;
  o.users = 40;
  o.items = 120;
  o.dim = 16;
  o.user_codes = 3;
  o.item_codes = 2;
  o.topics = 6;
  o.seed = seed;
  o.impressions = 30;
  o.impression_size = 8;
  return o;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// A .npy file with the given header dictionary text and payload.
inline std::string NpyBytes(const std::string& dict, const std::string& data,
                            int major = 1) {
  std::string header = dict;
  size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  uint32_t len = static_cast<uint32_t>(header.size());
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<char>((len >> 16) & 0xff));
    out.push_back(static_cast<char>((len >> 24) & 0xff));
  }
  return out + header + data;
}

inline std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
}

// A running child process with its stdout (and optionally stderr) piped.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv,
                 bool merge_stderr = false) {
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    if (merge_stderr) posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) !=
        0) {
      std::abort();
    }
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
    if (out_ != nullptr) fclose(out_);
  }
  // Next output line without '\n'; false at end of output.
  bool ReadLine(std::string* line) {
    line->clear();
    int c;
    while ((c = fgetc(out_)) != EOF) {
      if (c == '\n') return true;
      line->push_back(static_cast<char>(c));
    }
    return !line->empty();
  }
  std::string ReadRest() {
    std::string all, line;
    while (ReadLine(&line)) all += line + "\n";
    return all;
  }
  void Kill() { kill(pid_, SIGKILL); }
  // Exit status as from waitpid.
  int Wait() {
    int status = 0;
    if (pid_ > 0) {
      waitpid(pid_, &status, 0);
      pid_ = -1;
      status_ = status;
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  FILE* out_ = nullptr;
};

}  // namespace embsum::store::testing

#endif  // EMBSUM_TESTS_STORE_STORE_TEST_UTIL_H_
