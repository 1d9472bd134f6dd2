// Status propagation macros for absl::Status / absl::StatusOr (Debian's
// Abseil 20220623 has none). Thread-safe: stateless.
#ifndef EMBSUM_COMMON_STATUS_MACROS_H_
#define EMBSUM_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EMBSUM_CONCAT_INNER_(a, b) a##b
#define EMBSUM_CONCAT_(a, b) EMBSUM_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status embsum_status_ = (expr);          \
    if (!embsum_status_.ok()) return embsum_status_; \
  } while (0)

// ASSIGN_OR_RETURN(auto x, MakeX()); declares or assigns `lhs` from the value
// of a StatusOr, or returns its status.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(EMBSUM_CONCAT_(embsum_statusor_, __LINE__), lhs, rexpr)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                           \
  if (!statusor.ok()) return statusor.status();      \
  lhs = std::move(statusor).value()

#endif  // EMBSUM_COMMON_STATUS_MACROS_H_
