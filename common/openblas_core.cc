#include "common/openblas_core.h"

#include <cpuid.h>
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace embsum {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool OneOf(std::string_view core, std::initializer_list<std::string_view> set) {
  for (std::string_view s : set) {
    if (EqualsIgnoreCase(core, s)) return true;
  }
  return false;
}

}  // namespace

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(1, 0, eax, ebx, ecx, edx);
  const bool osxsave = (ecx >> 27) & 1;
  const bool fma = (ecx >> 12) & 1;
  if (!osxsave) return f;
  // XCR0: the OS saves XMM/YMM (bits 1, 2) and opmask/ZMM (bits 5..7).
  uint32_t xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool ymm = (xcr0_lo & 0x6) == 0x6;
  const bool zmm = ymm && (xcr0_lo & 0xe0) == 0xe0;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = ymm && ((ebx >> 5) & 1);
  f.fma = ymm && fma;
  f.avx512f = zmm && ((ebx >> 16) & 1);
  f.avx512dq = zmm && ((ebx >> 17) & 1);
  f.avx512cd = zmm && ((ebx >> 28) & 1);
  f.avx512bw = zmm && ((ebx >> 30) & 1);
  f.avx512vl = zmm && ((ebx >> 31) & 1);
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  f.avx512_bf16 = f.avx512f && ((eax >> 5) & 1);
  return f;
}

std::optional<std::string> ChooseOpenBlasCoretype(const char* env_value,
                                                  std::string_view corename,
                                                  const CpuFeatures& cpu) {
  if (env_value != nullptr || corename.empty()) return std::nullopt;
  const bool avx512 = cpu.avx512f && cpu.avx512cd && cpu.avx512bw &&
                      cpu.avx512dq && cpu.avx512vl;
  if (avx512) {
    if (OneOf(corename, {"SkylakeX", "Cooperlake", "SapphireRapids"})) {
      return std::nullopt;
    }
    return cpu.avx512_bf16 ? "Cooperlake" : "SkylakeX";
  }
  if (cpu.avx2 && cpu.fma) {
    // Cores with AVX2 kernels (or better) are left alone.
    if (OneOf(corename,
              {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})) {
      return std::nullopt;
    }
    return "Haswell";
  }
  return std::nullopt;
}

std::string LoadedOpenBlasCorename() {
  using Fn = char* (*)();
  void* symbol = dlsym(RTLD_DEFAULT, "openblas_get_corename");
  if (symbol == nullptr) return "";
  const char* name = reinterpret_cast<Fn>(symbol)();
  return name != nullptr ? name : "";
}

void MaybeReexecForOpenBlas(char** argv) {
  const std::string corename = LoadedOpenBlasCorename();
  const std::optional<std::string> core = ChooseOpenBlasCoretype(
      std::getenv("OPENBLAS_CORETYPE"), corename, DetectCpuFeatures());
  if (!core.has_value()) return;
  if (setenv("OPENBLAS_CORETYPE", core->c_str(), 0) != 0) return;
  execv("/proc/self/exe", argv);
  std::fprintf(stderr,
               "warning: could not re-execute with OPENBLAS_CORETYPE=%s (%s); "
               "BLAS runs OpenBLAS's %s kernels\n",
               core->c_str(), std::strerror(errno), corename.c_str());
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace embsum
