// embsum-bench-scoring (docs/design.md section 6, contract): times our scorer,
// the two sgemm products of the same shapes (the bound) and FAISS
// IndexFlatIP over the same CPE rows (the peer) in one run, and prints the
// ratios. Compiled by benchmarks/CMakeLists.txt and by benchmarks/gpu/ (on
// a bare GPU machine, where BLAS and FAISS may be missing).
//
// Optional peers, by compile definition:
//   EMBSUM_HAVE_BLAS=1   cblas_sgemm (OpenBLAS) bound for --backend=cpu
//   EMBSUM_HAVE_FAISS=1  FAISS IndexFlatIP peer
//   EMBSUM_HAVE_CUDA=1   --backend=cuda (embsum::scoring_cuda), with the
//                        cuBLAS sgemm bound
// A missing peer is reported as null in the JSON.
#ifndef EMBSUM_BENCHMARKS_BENCH_SCORING_H_
#define EMBSUM_BENCHMARKS_BENCH_SCORING_H_

namespace embsum::bench {

// Runs the benchmark; returns the process exit code (2 on bad flags).
int RunScoringBench(int argc, char** argv);

}  // namespace embsum::bench

#endif  // EMBSUM_BENCHMARKS_BENCH_SCORING_H_
