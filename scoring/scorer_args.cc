#include "scoring/scorer_args.h"

#include <string>

namespace embsum::scoring {
namespace {

std::string Count(size_t n) { return std::to_string(n); }

std::string Who(std::string_view who) { return std::string(who) + ": "; }

}  // namespace

Status CheckUserArgs(std::string_view who, const UserView& user,
                     const ItemArena& arena) {
  const ArenaLayout& layout = arena.layout();
  if (user.dim != layout.dim) {
    return Status::InvalidArgument(Who(who) + "user dim " + Count(user.dim) +
                                   " != arena dim " + Count(layout.dim));
  }
  const size_t expected = size_t{user.user_codes} * user.dim;
  if (user.upe.size() != expected) {
    return Status::InvalidArgument(
        Who(who) + "user upe has " + Count(user.upe.size()) +
        " floats, expected user_codes*dim = " + Count(expected));
  }
  if (!user.queries.empty() && user.queries.size() != expected) {
    return Status::InvalidArgument(
        Who(who) + "user queries has " + Count(user.queries.size()) +
        " floats, expected user_codes*dim = " + Count(expected) + " (or 0)");
  }
  return Status::Ok();
}

Status CheckScoreArgs(std::string_view who, const UserView& user,
                      const ItemArena& arena, std::span<const uint32_t> rows,
                      std::span<const float> scores,
                      std::span<const int32_t> top_codes) {
  Status status = CheckUserArgs(who, user, arena);
  if (!status.ok()) return status;
  if (scores.size() != rows.size()) {
    return Status::InvalidArgument(Who(who) + "scores has " +
                                   Count(scores.size()) + " entries for " +
                                   Count(rows.size()) + " rows");
  }
  if (!top_codes.empty() && top_codes.size() != rows.size()) {
    return Status::InvalidArgument(
        Who(who) + "top_codes has " + Count(top_codes.size()) +
        " entries for " + Count(rows.size()) + " rows (want equal or 0)");
  }
  const size_t size = arena.size();
  for (size_t c = 0; c < rows.size(); ++c) {
    if (rows[c] >= size) {
      return Status::InvalidArgument(
          Who(who) + "candidate " + Count(c) + ": row " + Count(rows[c]) +
          " out of range (arena has " + Count(size) + " rows)");
    }
  }
  return Status::Ok();
}

Status CheckScanArgs(std::string_view who, const UserView& user,
                     const ItemArena& arena, std::span<const uint8_t> live,
                     const void* out, size_t* scan_rows) {
  if (out == nullptr) {
    return Status::InvalidArgument(Who(who) + "ScoreAllTopK out is null");
  }
  Status status = CheckUserArgs(who, user, arena);
  if (!status.ok()) return status;
  const size_t size = arena.size();
  if (live.size() > size) {
    return Status::InvalidArgument(Who(who) + "live has " + Count(live.size()) +
                                   " flags, arena has " + Count(size) +
                                   " rows (want at most that, or 0)");
  }
  *scan_rows = live.empty() ? size : live.size();
  return Status::Ok();
}

}  // namespace embsum::scoring
