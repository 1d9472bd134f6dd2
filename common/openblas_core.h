// OpenBLAS kernel selection. Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks
// its kernels once, in its own library constructor, from cpuid or the
// OPENBLAS_CORETYPE environment variable. On CPUs it does not know it falls
// back to an older core: generic Prescott on some, AVX2 Haswell on AVX-512
// parts such as AMD Zen 5 (sgemm about 1.7x slower there than SkylakeX,
// docs/store.md). Everything that calls BLAS (FAISS in embsum-server and
// embsum-ingest) should run the CPU's widest kernels.
//
// Because OpenBLAS reads the variable before any code of the executable
// runs (a constructor in the executable is too late: checked), the fix is
// to re-execute the program once with OPENBLAS_CORETYPE set. Nothing is
// changed when the variable is already set (any value, the operator's
// choice wins), when OpenBLAS is not the BLAS in the process, or when the
// core it picked is already right.
//
// Thread-safety: call MaybeReexecForOpenBlas first thing in main(), before
// any thread exists. The other functions are pure or read-only.
#ifndef EMBSUM_COMMON_OPENBLAS_CORE_H_
#define EMBSUM_COMMON_OPENBLAS_CORE_H_

#include <optional>
#include <string>
#include <string_view>

namespace embsum {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512cd = false;
  bool avx512_bf16 = false;
};

// This CPU's features (cpuid, and the OS saves the AVX/AVX-512 state).
CpuFeatures DetectCpuFeatures();

// The OPENBLAS_CORETYPE to set, or nullopt to leave things as they are.
// env_value: the variable's current value (null when unset). corename:
// what openblas_get_corename() returned (empty when OpenBLAS is absent).
// AVX-512 (F, CD, BW, DQ, VL): "Cooperlake" with AVX512_BF16, else
// "SkylakeX", unless the core is already one of those or SapphireRapids.
// AVX2 + FMA without AVX-512: "Haswell" when the core is an older one
// (Prescott, Nehalem, Sandybridge, ...). Pure: no environment access.
std::optional<std::string> ChooseOpenBlasCoretype(const char* env_value,
                                                  std::string_view corename,
                                                  const CpuFeatures& cpu);

// openblas_get_corename() of the OpenBLAS loaded in this process, looked up
// at run time (no link dependency); empty when there is none.
std::string LoadedOpenBlasCorename();

// If ChooseOpenBlasCoretype(getenv("OPENBLAS_CORETYPE"),
// LoadedOpenBlasCorename(), DetectCpuFeatures()) names a core: sets the
// variable and re-executes /proc/self/exe with the same argv (the process
// keeps its pid). Returns when nothing needed doing or the exec failed (a
// line on stderr; the program then runs on the core OpenBLAS chose).
void MaybeReexecForOpenBlas(char** argv);

}  // namespace embsum

#endif  // EMBSUM_COMMON_OPENBLAS_CORE_H_
