#include "common/tool_flags.h"

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace embsum {
namespace {

// The executable's main.cc (or *_main.cc) and the shared flag files of
// tools/ (*_flags.cc).
bool DefinedInMain(absl::string_view filename) {
  return absl::EndsWith(filename, "main.cc") ||
         absl::EndsWith(filename, "_flags.cc");
}

}  // namespace

void ShowOwnFlagsInHelp() {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = DefinedInMain;
  config.contains_helpshort_flags = DefinedInMain;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace embsum
