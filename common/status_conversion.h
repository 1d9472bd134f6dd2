// The one conversion of each status type the project meets into
// absl::Status, keeping the code (the three types share gRPC's numbering).
// Header-only; thread-safe: stateless.
#ifndef EMBSUM_COMMON_STATUS_CONVERSION_H_
#define EMBSUM_COMMON_STATUS_CONVERSION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "scoring/status.h"

namespace embsum {

// scoring::Status -> absl::Status; a non-empty `context` prefixes the
// message ("context: message").
inline absl::Status FromScoringStatus(const scoring::Status& status,
                                      absl::string_view context = {}) {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.code());
  if (context.empty()) return absl::Status(code, status.message());
  return absl::Status(code, absl::StrCat(context, ": ", status.message()));
}

}  // namespace embsum

#endif  // EMBSUM_COMMON_STATUS_CONVERSION_H_
