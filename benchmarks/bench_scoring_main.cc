// embsum-bench-scoring: see benchmarks/bench_scoring.h.
#include "benchmarks/bench_scoring.h"

int main(int argc, char** argv) {
  return embsum::bench::RunScoringBench(argc, argv);
}
