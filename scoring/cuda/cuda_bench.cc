#include "scoring/cuda/cuda_bench.h"

#if EMBSUM_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "scoring/cuda/cuda_util.h"

namespace embsum::scoring {
namespace {

using cuda_internal::DeviceBuffer;
using cuda_internal::ElapsedMs;
using cuda_internal::Event;
using cuda_internal::Stream;

#if EMBSUM_HAVE_CUBLAS
#define EMBSUM_CUBLAS_RETURN_IF_ERROR(expr)                                    \
  do {                                                                         \
    const cublasStatus_t embsum_cublas_status_ = (expr);                       \
    if (embsum_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                      \
      return Status::Internal(std::string("cuBLAS error in ") + #expr + ": " + \
                              cublasGetStatusString(embsum_cublas_status_));   \
    }                                                                          \
  } while (false)

class CublasHandle {
 public:
  CublasHandle() = default;
  ~CublasHandle() {
    if (handle_ != nullptr) cublasDestroy(handle_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  Status Create() {
    EMBSUM_CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle_));
    return Status::Ok();
  }
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};
#endif  // EMBSUM_HAVE_CUBLAS

[[maybe_unused]] Status UploadRandom(size_t count, std::mt19937& rng,
                                     DeviceBuffer* out) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> host(count);
  for (float& x : host) x = uniform(rng);
  EMBSUM_SCORING_RETURN_IF_ERROR(out->Reserve(count * sizeof(float)));
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpy(
      out->get(), host.data(), count * sizeof(float), cudaMemcpyHostToDevice));
  return Status::Ok();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

Status CudaSgemmBoundSeconds(uint32_t m, uint32_t n, uint32_t d,
                             uint32_t candidates, int reps, double* seconds) {
#if !EMBSUM_HAVE_CUBLAS
  (void)m, (void)n, (void)d, (void)candidates, (void)reps, (void)seconds;
  return Status::Unavailable(
      "sgemm bound: embsum::scoring_cuda was built without cuBLAS");
#else
  if (m == 0 || n == 0 || d == 0 || candidates == 0 || reps <= 0) {
    return Status::InvalidArgument(
        "sgemm bound: m, n, d, candidates and reps must be positive");
  }
  const int cols = static_cast<int>(size_t{candidates} * n);
  std::mt19937 rng(12345);
  DeviceBuffer a, q, b, g, k, l;
  EMBSUM_SCORING_RETURN_IF_ERROR(UploadRandom(size_t{m} * d, rng, &a));
  EMBSUM_SCORING_RETURN_IF_ERROR(UploadRandom(size_t{m} * d, rng, &q));
  EMBSUM_SCORING_RETURN_IF_ERROR(
      UploadRandom(static_cast<size_t>(cols) * d, rng, &b));
  EMBSUM_SCORING_RETURN_IF_ERROR(
      UploadRandom(static_cast<size_t>(cols) * d, rng, &g));
  EMBSUM_SCORING_RETURN_IF_ERROR(
      k.Reserve(static_cast<size_t>(cols) * m * sizeof(float)));
  EMBSUM_SCORING_RETURN_IF_ERROR(
      l.Reserve(static_cast<size_t>(cols) * m * sizeof(float)));
  CublasHandle handle;
  EMBSUM_SCORING_RETURN_IF_ERROR(handle.Create());
  Stream stream;
  EMBSUM_SCORING_RETURN_IF_ERROR(stream.Create());
  EMBSUM_CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle.get(), stream.get()));
  // Plain fp32 (no TF32), like the OpenBLAS bound of the CPU benchmark.
  EMBSUM_CUBLAS_RETURN_IF_ERROR(
      cublasSetMathMode(handle.get(), CUBLAS_PEDANTIC_MATH));
  const float one = 1.0f, zero = 0.0f;
  // Row-major K (m x cols) = A (m x d) * B (cols x d)^T, computed as the
  // column-major (cols x m) product B * A^T.
  auto products = [&]() -> Status {
    EMBSUM_CUBLAS_RETURN_IF_ERROR(cublasSgemm(
        handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, cols, static_cast<int>(m),
        static_cast<int>(d), &one, b.as<float>(), static_cast<int>(d),
        a.as<float>(), static_cast<int>(d), &zero, k.as<float>(), cols));
    EMBSUM_CUBLAS_RETURN_IF_ERROR(cublasSgemm(
        handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, cols, static_cast<int>(m),
        static_cast<int>(d), &one, g.as<float>(), static_cast<int>(d),
        q.as<float>(), static_cast<int>(d), &zero, l.as<float>(), cols));
    return Status::Ok();
  };
  for (int i = 0; i < 3; ++i) EMBSUM_SCORING_RETURN_IF_ERROR(products());
  Event start, stop;
  EMBSUM_SCORING_RETURN_IF_ERROR(start.Create());
  EMBSUM_SCORING_RETURN_IF_ERROR(stop.Create());
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaEventRecord(start.get(), stream.get()));
    EMBSUM_SCORING_RETURN_IF_ERROR(products());
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop.get(), stream.get()));
    float ms = 0;
    EMBSUM_SCORING_RETURN_IF_ERROR(ElapsedMs(start, stop, &ms));
    times.push_back(ms * 1e-3);
  }
  *seconds = Median(times);
  return Status::Ok();
#endif  // EMBSUM_HAVE_CUBLAS
}

Status CudaCopyBandwidth(size_t bytes, int reps, double* bytes_per_second) {
  if (bytes == 0 || reps <= 0) {
    return Status::InvalidArgument(
        "copy bandwidth: bytes and reps must be "
        "positive");
  }
  DeviceBuffer src, dst;
  EMBSUM_SCORING_RETURN_IF_ERROR(src.Reserve(bytes));
  EMBSUM_SCORING_RETURN_IF_ERROR(dst.Reserve(bytes));
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemset(src.get(), 0x3c, bytes));
  Stream stream;
  EMBSUM_SCORING_RETURN_IF_ERROR(stream.Create());
  Event start, stop;
  EMBSUM_SCORING_RETURN_IF_ERROR(start.Create());
  EMBSUM_SCORING_RETURN_IF_ERROR(stop.Create());
  for (int i = 0; i < 2; ++i) {
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream.get()));
  }
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaEventRecord(start.get(), stream.get()));
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream.get()));
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop.get(), stream.get()));
    float ms = 0;
    EMBSUM_SCORING_RETURN_IF_ERROR(ElapsedMs(start, stop, &ms));
    times.push_back(ms * 1e-3);
  }
  // Read plus written bytes.
  *bytes_per_second = 2.0 * static_cast<double>(bytes) / Median(times);
  return Status::Ok();
}

}  // namespace embsum::scoring
