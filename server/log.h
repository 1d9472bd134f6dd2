// One line per event on stderr, key=value (logfmt):
//   ts=2026-11-27T09:30:00.123Z level=info event=start users=1000 ...
// Values with spaces, quotes or '=' are quoted. Thread-safe; each line is
// written with a single write(2), so lines never interleave.
#ifndef EMBSUM_SERVER_LOG_H_
#define EMBSUM_SERVER_LOG_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace embsum::server {

using LogField = std::pair<std::string_view, std::string>;

void LogEvent(std::string_view level, std::string_view event,
              std::initializer_list<LogField> fields);

// The line LogEvent writes, without the timestamp and newline (for tests).
std::string FormatLogFields(std::string_view level, std::string_view event,
                            std::initializer_list<LogField> fields);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_LOG_H_
