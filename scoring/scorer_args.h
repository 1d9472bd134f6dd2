// The argument contract of Scorer (scorer.h), checked in one place for
// every implementation (CPU and CUDA). Thread-safe: stateless.
#ifndef EMBSUM_SCORING_SCORER_ARGS_H_
#define EMBSUM_SCORING_SCORER_ARGS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "scoring/item_arena.h"
#include "scoring/status.h"
#include "scoring/user_view.h"

namespace embsum::scoring {

// The user against the arena: user.dim == arena dim, upe m*d values,
// queries m*d or none. `who` starts every message ("cpu scorer").
Status CheckUserArgs(std::string_view who, const UserView& user,
                     const ItemArena& arena);

// Scorer::Score: the user (CheckUserArgs); scores.size() == rows.size();
// top_codes.size() == rows.size() or 0; every row < arena.size().
Status CheckScoreArgs(std::string_view who, const UserView& user,
                      const ItemArena& arena, std::span<const uint32_t> rows,
                      std::span<const float> scores,
                      std::span<const int32_t> top_codes);

// Scorer::ScoreAllTopK: the user; `out` non-null; live.size() <=
// arena.size(). Sets *scan_rows to the rows the scan covers: live.size(),
// or arena.size() when live is empty. (A snapshot's liveness covers its own
// rows; the shared arena may already hold rows appended after it.)
Status CheckScanArgs(std::string_view who, const UserView& user,
                     const ItemArena& arena, std::span<const uint8_t> live,
                     const void* out, size_t* scan_rows);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_SCORER_ARGS_H_
