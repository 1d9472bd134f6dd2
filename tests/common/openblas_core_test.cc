#include "common/openblas_core.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace embsum {
namespace {

CpuFeatures Avx512(bool bf16) {
  CpuFeatures f;
  f.avx2 = f.fma = true;
  f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = f.avx512cd = true;
  f.avx512_bf16 = bf16;
  return f;
}

CpuFeatures Avx2() {
  CpuFeatures f;
  f.avx2 = f.fma = true;
  return f;
}

TEST(ChooseOpenBlasCoretypeTest, AnySetValueIsTheOperatorsChoice) {
  EXPECT_EQ(ChooseOpenBlasCoretype("Prescott", "Prescott", Avx512(true)),
            std::nullopt);
  EXPECT_EQ(ChooseOpenBlasCoretype("", "Haswell", Avx512(false)), std::nullopt);
}

TEST(ChooseOpenBlasCoretypeTest, NoOpenBlasNoChange) {
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "", Avx512(true)), std::nullopt);
}

TEST(ChooseOpenBlasCoretypeTest, Avx512CpuGetsAnAvx512Core) {
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Prescott", Avx512(false)),
            "SkylakeX");
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Haswell", Avx512(false)),
            "SkylakeX");
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Zen", Avx512(true)), "Cooperlake");
  // Already an AVX-512 core (any case): left alone.
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "SkylakeX", Avx512(true)),
            std::nullopt);
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "cooperlake", Avx512(true)),
            std::nullopt);
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "SapphireRapids", Avx512(true)),
            std::nullopt);
}

TEST(ChooseOpenBlasCoretypeTest, PartialAvx512IsTreatedAsAvx2) {
  CpuFeatures f = Avx512(false);
  f.avx512vl = false;
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Haswell", f), std::nullopt);
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Prescott", f), "Haswell");
}

TEST(ChooseOpenBlasCoretypeTest, Avx2CpuOnlyLeavesGenericCores) {
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Prescott", Avx2()), "Haswell");
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Sandybridge", Avx2()), "Haswell");
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Zen", Avx2()), std::nullopt);
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Haswell", Avx2()), std::nullopt);
}

TEST(ChooseOpenBlasCoretypeTest, OldCpuIsLeftAlone) {
  EXPECT_EQ(ChooseOpenBlasCoretype(nullptr, "Prescott", CpuFeatures{}),
            std::nullopt);
}

TEST(DetectCpuFeaturesTest, AgreesWithTheCompilersCpuSupports) {
  const CpuFeatures f = DetectCpuFeatures();
  EXPECT_EQ(f.avx2, bool(__builtin_cpu_supports("avx2")));
  EXPECT_EQ(f.fma, bool(__builtin_cpu_supports("fma")));
  EXPECT_EQ(f.avx512f, bool(__builtin_cpu_supports("avx512f")));
  EXPECT_EQ(f.avx512bw, bool(__builtin_cpu_supports("avx512bw")));
  EXPECT_EQ(f.avx512vl, bool(__builtin_cpu_supports("avx512vl")));
}

// Runs the helper with `env_value` as OPENBLAS_CORETYPE (null: unset) in the
// child's environment only; returns its stdout.
std::string RunHelper(const char* mode, const char* env_value) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "OPENBLAS_CORETYPE=", 18) != 0) env.push_back(*e);
  }
  if (env_value != nullptr) {
    env.push_back(std::string("OPENBLAS_CORETYPE=") + env_value);
  }
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return "";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::string path = EMBSUM_OPENBLAS_HELPER;
  std::string arg = mode;
  char* argv[] = {path.data(), arg.data(), nullptr};
  pid_t pid = 0;
  const int rc =
      posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  std::string out;
  if (rc == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, n);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) out = "";
  }
  close(fds[0]);
  return out;
}

struct HelperOutput {
  std::string core, env;
  std::vector<long long> labels;
  std::vector<double> distances;
};

HelperOutput Parse(const std::string& text) {
  HelperOutput h;
  std::istringstream in(text);
  std::string word;
  in >> word >> h.core >> word >> h.env;
  long long label;
  double distance;
  while (in >> label >> distance) {
    h.labels.push_back(label);
    h.distances.push_back(distance);
  }
  return h;
}

TEST(MaybeReexecForOpenBlasTest, ChildRunsTheChosenCoreWithUnchangedResults) {
  const HelperOutput plain = Parse(RunHelper("plain", nullptr));
  ASSERT_FALSE(plain.labels.empty()) << "helper failed";
  EXPECT_EQ(plain.env, "-");
  const HelperOutput reexec = Parse(RunHelper("reexec", nullptr));
  ASSERT_EQ(reexec.labels.size(), plain.labels.size());
  const std::optional<std::string> want =
      ChooseOpenBlasCoretype(nullptr, plain.core, DetectCpuFeatures());
  if (want.has_value()) {
    EXPECT_EQ(reexec.env, *want);
    EXPECT_TRUE(strcasecmp(reexec.core.c_str(), want->c_str()) == 0)
        << reexec.core << " vs " << *want;
  } else {
    EXPECT_EQ(reexec.env, "-");
    EXPECT_EQ(reexec.core, plain.core);
  }
  // Same neighbours, distances equal to float rounding.
  EXPECT_EQ(reexec.labels, plain.labels);
  for (size_t i = 0; i < plain.distances.size(); ++i) {
    EXPECT_NEAR(reexec.distances[i], plain.distances[i],
                1e-4 * (1 + std::abs(plain.distances[i])));
  }
  // The operator's choice stands.
  const HelperOutput chosen = Parse(RunHelper("reexec", "Haswell"));
  EXPECT_EQ(chosen.env, "Haswell");
  EXPECT_EQ(chosen.core, "Haswell");
  EXPECT_EQ(chosen.labels, plain.labels);
}

}  // namespace
}  // namespace embsum
