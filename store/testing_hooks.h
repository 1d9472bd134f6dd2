// Seams through which tests (and fault-injection benchmarks) reach inside
// the store. Production code never sets them, and they are kept apart from
// the options an operator reads (ItemCatalogOptions, UserStoreOptions,
// DataDirOptions): they are passed to Open as a separate argument.
#ifndef EMBSUM_STORE_TESTING_HOOKS_H_
#define EMBSUM_STORE_TESTING_HOOKS_H_

#include <functional>
#include <string_view>

#include "absl/status/status.h"

namespace embsum::store {

struct ItemCatalogTestingHooks {
  // Called at each named step of a write or checkpoint ("upsert:build",
  // "upsert:log", "delete:log", "checkpoint:write", "checkpoint:trim"); a
  // non-OK status makes that step fail as a real error there would. Called
  // under the writer's lock.
  std::function<absl::Status(std::string_view step)> fault;
};

struct UserStoreTestingHooks {
  // Called by GetWithSummary between its embedding read and its summary
  // read (to write in between and check both reads see the same moment).
  std::function<void()> between_reads;
};

struct DataDirTestingHooks {
  ItemCatalogTestingHooks items;
  UserStoreTestingHooks users;
};

}  // namespace embsum::store

#endif  // EMBSUM_STORE_TESTING_HOOKS_H_
