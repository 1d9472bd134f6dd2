#include "server/log.h"

#include <unistd.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace embsum::server {
namespace {

void AppendValue(std::string_view v, std::string* out) {
  const bool quote =
      v.empty() || v.find_first_of(" \t\"=\n\\") != std::string_view::npos;
  if (!quote) {
    out->append(v);
    return;
  }
  out->push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

}  // namespace

std::string FormatLogFields(std::string_view level, std::string_view event,
                            std::initializer_list<LogField> fields) {
  std::string line = "level=";
  line.append(level);
  line.append(" event=");
  AppendValue(event, &line);
  for (const auto& [key, value] : fields) {
    line.push_back(' ');
    line.append(key);
    line.push_back('=');
    AppendValue(value, &line);
  }
  return line;
}

void LogEvent(std::string_view level, std::string_view event,
              std::initializer_list<LogField> fields) {
  std::string line = "ts=";
  line.append(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                               absl::UTCTimeZone()));
  line.push_back(' ');
  line.append(FormatLogFields(level, event, fields));
  line.push_back('\n');
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace embsum::server
