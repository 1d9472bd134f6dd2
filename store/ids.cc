#include "store/internal/ids.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "store/internal/file_util.h"

namespace embsum::store {
namespace {

// Shows an id in an error message: quoted, escaped, cut at 64 bytes.
std::string Quote(absl::string_view id) {
  std::string out = "\"";
  for (size_t i = 0; i < id.size() && i < 64; ++i) {
    unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (id.size() > 64) out += "...";
  out += "\"";
  return out;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status ValidateId(absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("empty id");
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("id ", Quote(id), " is ", id.size(), " bytes (at most ",
                     kMaxIdBytes, ")"));
  }
  for (char ch : id) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "id %s contains control character 0x%02x", Quote(id), c));
    }
  }
  if (!IsValidUtf8(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("id ", Quote(id), " is not valid UTF-8"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseIds(absl::string_view text,
                                                  absl::string_view name) {
  std::vector<std::string> ids;
  absl::flat_hash_map<absl::string_view, size_t> first_line;
  size_t pos = 0;
  size_t line = 0;
  while (pos < text.size()) {
    ++line;
    size_t end = text.find('\n', pos);
    if (end == absl::string_view::npos) end = text.size();
    absl::string_view id = text.substr(pos, end - pos);
    pos = end + 1;
    if (absl::Status s = ValidateId(id); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": line ", line, ": ", s.message()));
    }
    auto [it, inserted] = first_line.emplace(id, line);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": line ", line, ": duplicate id ", Quote(id),
                       " (first on line ", it->second, ")"));
    }
    ids.emplace_back(id);
  }
  return ids;
}

absl::StatusOr<std::vector<std::string>> ReadIds(const std::string& path,
                                                 absl::string_view name) {
  auto text = internal::ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(name, ": ", text.status().message()));
  }
  return ParseIds(*text, name);
}

absl::StatusOr<std::vector<SummaryLine>> ParseSummaries(
    absl::string_view text, absl::string_view name) {
  using Json = nlohmann::json;
  std::vector<SummaryLine> out;
  absl::flat_hash_map<std::string, size_t> first_line;
  size_t pos = 0;
  size_t line = 0;
  while (pos < text.size()) {
    ++line;
    size_t end = text.find('\n', pos);
    if (end == absl::string_view::npos) end = text.size();
    absl::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    if (raw.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": line ", line, ": ", what));
    };
    Json j = Json::parse(raw.begin(), raw.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return error("not a JSON object");
    }
    auto uid = j.find("user_id");
    if (uid == j.end() || !uid->is_string()) {
      return error("missing string field \"user_id\"");
    }
    auto summary = j.find("summary");
    if (summary == j.end() || !summary->is_string()) {
      return error("missing string field \"summary\"");
    }
    SummaryLine s{uid->get<std::string>(), summary->get<std::string>()};
    if (absl::Status v = ValidateId(s.user_id); !v.ok()) {
      return error(v.message());
    }
    if (s.summary.size() > kMaxSummaryBytes) {
      return error(absl::StrCat("summary is ", s.summary.size(),
                                " bytes (at most ", kMaxSummaryBytes, ")"));
    }
    auto [it, inserted] = first_line.emplace(s.user_id, line);
    if (!inserted) {
      return error(absl::StrCat("second summary for user ", Quote(s.user_id),
                                " (first on line ", it->second, ")"));
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace embsum::store
