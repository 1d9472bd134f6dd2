// A minimal status type for scoring/, which must not depend on Abseil (it
// builds alone on a bare GPU machine). server/ converts it to absl::Status
// with the same code. Thread-safe: a value type.
#ifndef EMBSUM_SCORING_STATUS_H_
#define EMBSUM_SCORING_STATUS_H_

#include <string>
#include <utility>

namespace embsum::scoring {

class Status {
 public:
  // Numerically equal to absl::StatusCode / grpc::StatusCode.
  enum class Code : int {
    kOk = 0,
    kInvalidArgument = 3,
    kResourceExhausted = 8,
    kFailedPrecondition = 9,
    kInternal = 13,
    kUnavailable = 14,
  };

  Status() = default;
  Status(Code code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return Status(Code::kInvalidArgument, std::move(m));
  }
  static Status ResourceExhausted(std::string m) {
    return Status(Code::kResourceExhausted, std::move(m));
  }
  static Status FailedPrecondition(std::string m) {
    return Status(Code::kFailedPrecondition, std::move(m));
  }
  static Status Internal(std::string m) {
    return Status(Code::kInternal, std::move(m));
  }
  static Status Unavailable(std::string m) {
    return Status(Code::kUnavailable, std::move(m));
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_STATUS_H_
