// Command-line set-up shared by the project's executables.
#ifndef EMBSUM_COMMON_TOOL_FLAGS_H_
#define EMBSUM_COMMON_TOOL_FLAGS_H_

namespace embsum {

// Makes `--help` and `--helpshort` list the flags the executable's own
// main.cc (or *_main.cc) defines, and those of shared flag files
// (tools/client_flags/*_flags.cc). Abseil's default lists only flags defined
// in a file named after the program ("embsum-server.cc"), which none of ours
// is, so `--help` printed "No flags matched". Call once in main, before
// absl::ParseCommandLine. Not thread-safe with concurrent flag parsing.
void ShowOwnFlagsInHelp();

}  // namespace embsum

#endif  // EMBSUM_COMMON_TOOL_FLAGS_H_
