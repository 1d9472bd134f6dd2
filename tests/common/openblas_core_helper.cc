// Child process of openblas_core_test: optionally re-executes itself for
// OpenBLAS (argv[1] == "reexec"), then prints the core OpenBLAS runs, the
// OPENBLAS_CORETYPE it sees, and a FAISS inner-product search on fixed
// data (labels and distances), so the test can compare cores.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/openblas_core.h"
#include "faiss/IndexFlat.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "reexec") == 0) {
    embsum::MaybeReexecForOpenBlas(argv);
  }
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  std::printf("core %s\nenv %s\n", embsum::LoadedOpenBlasCorename().c_str(),
              env != nullptr ? env : "-");
  // Enough queries (> 20) that FAISS uses BLAS sgemm.
  constexpr int kDim = 96, kBase = 3000, kQueries = 64, kK = 5;
  std::vector<float> base(size_t{kBase} * kDim),
      queries(size_t{kQueries} * kDim);
  unsigned state = 12345;
  auto next = [&] {
    state = state * 1103515245u + 12345u;
    return static_cast<float>((state >> 8) & 0xffff) / 65536.0f - 0.5f;
  };
  for (float& v : base) v = next();
  for (float& v : queries) v = next();
  faiss::IndexFlatIP index(kDim);
  index.add(kBase, base.data());
  std::vector<float> distances(size_t{kQueries} * kK);
  std::vector<decltype(faiss::Index::ntotal)> labels(size_t{kQueries} * kK);
  index.search(kQueries, queries.data(), kK, distances.data(), labels.data());
  for (size_t i = 0; i < labels.size(); ++i) {
    std::printf("%lld %.6f\n", static_cast<long long>(labels[i]), distances[i]);
  }
  return 0;
}
