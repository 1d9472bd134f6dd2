#include "scoring/cuda/cuda_util.h"

#include <string>

namespace embsum::scoring::cuda_internal {

Status CudaStatus(cudaError_t error, std::string_view what,
                  std::string_view file, int line) {
  const size_t slash = file.rfind('/');
  const std::string_view base =
      slash == std::string_view::npos ? file : file.substr(slash + 1);
  const std::string line_text = std::to_string(line);
  const std::string_view description = cudaGetErrorString(error);
  const std::string_view name = cudaGetErrorName(error);
  std::string message;
  message.reserve(64 + what.size() + base.size() + description.size() +
                  name.size());
  message.append("CUDA error in ")
      .append(what)
      .append(" at ")
      .append(base)
      .append(":")
      .append(line_text)
      .append(": ")
      .append(description)
      .append(" (")
      .append(name)
      .append(")");
  switch (error) {
    case cudaErrorMemoryAllocation:
      return Status::ResourceExhausted(std::move(message));
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorNotPermitted:
    case cudaErrorNotSupported:
      return Status::Unavailable(std::move(message));
    default:
      return Status::Internal(std::move(message));
  }
}

Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

Status Stream::Create() {
  cudaStream_t stream = nullptr;
  EMBSUM_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = stream;
  return Status::Ok();
}

Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) cudaEventDestroy(event_);
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

Status Event::Create() {
  cudaEvent_t event = nullptr;
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaEventCreate(&event));
  if (event_ != nullptr) cudaEventDestroy(event_);
  event_ = event;
  return Status::Ok();
}

Status ElapsedMs(const Event& start, const Event& stop, float* ms) {
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop.get()));
  EMBSUM_CUDA_RETURN_IF_ERROR(
      cudaEventElapsedTime(ms, start.get(), stop.get()));
  return Status::Ok();
}

Status QueryDeviceLimits(int device, DeviceLimits* limits) {
  int sms = 0, smem = 0;
  EMBSUM_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(
      &smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  limits->sm_count = static_cast<uint32_t>(sms);
  limits->max_smem_per_block = static_cast<size_t>(smem);
  return Status::Ok();
}

}  // namespace embsum::scoring::cuda_internal
