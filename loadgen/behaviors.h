// Readers for the inputs embsum-loadgen and embsum-eval draw requests from:
// the id lists of a docs/design.md section 3 artifact and MIND-format
// behaviors.tsv impressions. Thread-safety: stateless functions.
#ifndef EMBSUM_LOADGEN_BEHAVIORS_H_
#define EMBSUM_LOADGEN_BEHAVIORS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embsum::loadgen {

// Reads an ids.txt file: one id per line, 1..256 bytes, no control
// characters, unique. A trailing newline is optional; an empty file is an
// error. Errors name the file and the 1-based line.
absl::StatusOr<std::vector<std::string>> ReadIdFile(const std::string& path);

// One line of MIND behaviors.tsv:
//   impression id \t user id \t time \t history \t impressions
// history: space-separated item ids (may be empty); impressions:
// space-separated `itemid-1` (clicked) / `itemid-0` entries, or bare item
// ids in MIND's unlabeled test set.
struct Impression {
  std::string impression_id;
  std::string user_id;
  std::vector<std::string> candidates;
  std::vector<int> labels;  // 0/1 per candidate; empty when unlabeled
  int64_t line = 0;         // 1-based line in the file
};

struct ReadBehaviorsOptions {
  // Every impression entry must carry a -0/-1 label (embsum-eval needs them).
  bool require_labels = false;
  // Stop after this many impressions; 0 reads the whole file.
  uint64_t limit = 0;
};

// Parses behaviors.tsv. Errors name the file, the line and the problem (a
// wrong column count, an empty user id, an empty impression list, a bad
// label, labels on some entries but not others).
absl::StatusOr<std::vector<Impression>> ReadBehaviors(
    const std::string& path, const ReadBehaviorsOptions& options);

// Parses one line; `where` prefixes error messages ("file:line").
absl::StatusOr<Impression> ParseBehaviorsLine(absl::string_view line,
                                              absl::string_view where,
                                              bool require_labels);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_BEHAVIORS_H_
