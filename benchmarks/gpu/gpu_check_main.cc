// embsum-gpu-check: the device check of the CUDA scorer (docs/gpu.md).
//
// 1. Correctness on fresh random inputs (seed printed; --seed to repeat):
//    CudaScorer::Score over many shapes, odd ones included, against the
//    float64 ReferenceScore; outputs poisoned (host NaN/-7, device NaN/-1)
//    before every call. Dumps each shape's inputs and outputs for the
//    PyTorch float64 comparison (torch_compare.py). Batched concurrent
//    calls and full-scan top-k are checked the same way.
// 2. Timings with CUDA events after warm-up, median of many runs:
//    device-to-device copy bandwidth; Rank(500) at S1 (m=32, n=8, d=512,
//    queries and keys) per dtype; one launch for 1..256 users; full scans of
//    --scan_items items with bandwidth against the copy; ScoreAllTopK and
//    Score end to end; concurrent Score throughput with and without dynamic
//    batching.
// Writes check.json under --out and prints a summary.
//
// Each check lives in its own file: gpu_check_correctness.cc (1),
// gpu_check_timings.cc (2); gpu_check_common.h holds what they share.
#include "benchmarks/gpu/gpu_check_common.h"
#include "benchmarks/gpu/gpu_check_correctness.h"
#include "benchmarks/gpu/gpu_check_timings.h"

namespace embsum::scoring::gpu_check {
namespace {

int Main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress survives a timeout
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const size_t len = std::strlen(name);
      return arg.compare(0, len, name) == 0 ? argv[i] + len : nullptr;
    };
    if (const char* v = value("--out=")) {
      flags.out = v;
    } else if (const char* v = value("--dump_dir=")) {
      flags.dump_dir = v;
    } else if (const char* v = value("--seed=")) {
      flags.seed = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("--scan_items=")) {
      flags.scan_items = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("--rank_reps=")) {
      flags.rank_reps = std::atoi(v);
    } else if (arg == "--quick") {
      flags.quick = true;
    } else {
      std::fprintf(stderr,
                   "usage: embsum-gpu-check [--out=DIR] [--dump_dir=DIR] "
                   "[--seed=N] [--scan_items=N] [--rank_reps=N] [--quick]\n");
      return 2;
    }
  }
  std::string why;
  if (!CudaDeviceAvailable(&why)) {
    std::fprintf(stderr, "no CUDA device: %s\n", why.c_str());
    return 1;
  }
  if (flags.seed == 0) flags.seed = std::random_device{}();
  std::mt19937_64 rng(flags.seed);
  Report report;
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  DeviceLimits limits;
  CHECK_OK(cuda_internal::QueryDeviceLimits(0, &limits));
  std::printf(
      "device: %s, %d SMs, %.1f GiB, L2 %.0f MiB, cc %d.%d; seed %llu\n",
      prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0,
      prop.l2CacheSize / 1048576.0, prop.major, prop.minor,
      static_cast<unsigned long long>(flags.seed));
  report.AddString("device", prop.name);
  report.Add("seed", static_cast<double>(flags.seed));
  bool ok = true;
  std::printf("== correctness\n");
  CheckCorrectness(flags, rng, report, &ok);

  std::printf("== timings\n");
  double copy_bw = 0;
  CHECK_OK(CudaCopyBandwidth(size_t{4} << 30, 20, &copy_bw));
  report.Add("copy_GBps", copy_bw / 1e9);
  report.Line(
      Fmt("device-to-device copy: %.0f GB/s (read + written, 4 GiB, "
          "median of 20)",
          copy_bw / 1e9));
  double bound = NAN;
  const Status bound_status =
      CudaSgemmBoundSeconds(32, 8, 512, 500, 50, &bound);
  report.Add("sgemm_bound_rank500_us", bound * 1e6);
  report.Line(bound_status.ok()
                  ? Fmt("cuBLAS sgemm bound, two products at S1 x 500: "
                        "%.2f us",
                        bound * 1e6)
                  : "cuBLAS sgemm bound: " + bound_status.message());
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    TimeDtype(flags, dtype, copy_bw, limits, rng, report, &ok);
  }
  report.Add("ok", ok ? 1 : 0);
  if (!report.Write(flags.out + "/check.json")) ok = false;
  std::printf("== summary (%s)\n", prop.name);
  for (const std::string& line : report.summary()) {
    std::printf("  %s\n", line.c_str());
  }
  std::printf("check: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace embsum::scoring::gpu_check

int main(int argc, char** argv) {
  return embsum::scoring::gpu_check::Main(argc, argv);
}
