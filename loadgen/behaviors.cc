#include "loadgen/behaviors.h"

#include <fstream>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace embsum::loadgen {
namespace {

constexpr size_t kMaxIdBytes = 256;

bool HasControlChar(absl::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Strips one trailing '\r' (files written on Windows).
absl::string_view StripCr(absl::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadIdFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<std::string> ids;
  std::unordered_set<std::string> seen;
  std::string raw;
  int64_t line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    const absl::string_view id = StripCr(raw);
    const std::string where = absl::StrCat(path, ":", line_no, ": ");
    if (id.empty()) return absl::InvalidArgumentError(where + "empty id");
    if (id.size() > kMaxIdBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "id is ", id.size(), " bytes, the limit is ", kMaxIdBytes));
    }
    if (HasControlChar(id)) {
      return absl::InvalidArgumentError(where +
                                        "id contains a control character");
    }
    if (!seen.emplace(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "duplicate id '", id, "'"));
    }
    ids.emplace_back(id);
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  if (ids.empty()) return absl::InvalidArgumentError(path + ": no ids");
  return ids;
}

absl::StatusOr<Impression> ParseBehaviorsLine(absl::string_view line,
                                              absl::string_view where,
                                              bool require_labels) {
  line = StripCr(line);
  std::vector<absl::string_view> cols = absl::StrSplit(line, '\t');
  if (cols.size() != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     ": expected 5 tab-separated columns (impression "
                     "id, user id, time, history, impressions), got ",
                     cols.size()));
  }
  Impression imp;
  imp.impression_id = std::string(cols[0]);
  imp.user_id = std::string(cols[1]);
  if (imp.user_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": empty user id"));
  }
  int labeled = 0;
  int entry = 0;
  for (absl::string_view token :
       absl::StrSplit(cols[4], ' ', absl::SkipEmpty())) {
    ++entry;
    absl::string_view id = token;
    int label = -1;
    const size_t dash = token.rfind('-');
    if (dash != absl::string_view::npos && dash + 2 == token.size() &&
        (token.back() == '0' || token.back() == '1')) {
      id = token.substr(0, dash);
      label = token.back() - '0';
    } else if (dash != absl::string_view::npos && dash + 1 < token.size() &&
               require_labels) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": impression entry ", entry, " '", token,
                       "': label must be 0 or 1"));
    }
    if (id.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": impression entry ", entry, " '", token,
                       "': empty item id"));
    }
    if (label >= 0) ++labeled;
    imp.candidates.emplace_back(id);
    imp.labels.push_back(label);
  }
  if (imp.candidates.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": empty impression list"));
  }
  if (labeled == 0 && !require_labels) {
    imp.labels.clear();
  } else if (labeled != static_cast<int>(imp.candidates.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", imp.candidates.size() - labeled, " of ",
        imp.candidates.size(), " impression entries have no -0/-1 label"));
  }
  return imp;
}

absl::StatusOr<std::vector<Impression>> ReadBehaviors(
    const std::string& path, const ReadBehaviorsOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<Impression> out;
  std::string raw;
  int64_t line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    if (StripCr(raw).empty()) continue;  // blank lines, e.g. a final one
    ASSIGN_OR_RETURN(Impression imp,
                     ParseBehaviorsLine(raw, absl::StrCat(path, ":", line_no),
                                        options.require_labels));
    imp.line = line_no;
    out.push_back(std::move(imp));
    if (options.limit != 0 && out.size() >= options.limit) break;
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  if (out.empty()) {
    return absl::InvalidArgumentError(path + ": no impressions");
  }
  return out;
}

}  // namespace embsum::loadgen
