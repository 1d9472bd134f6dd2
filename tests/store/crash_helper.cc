// Test helper for crash_test: applies upserts to a data directory one batch
// at a time and prints an acknowledgement line after each one returns, so
// the parent can SIGKILL it at any point and check that every acknowledged
// write survived.
//
//   embsum_store_crash_helper users DATA_DIR COUNT
//     upserts users "crash-<i>" (upe[j] = i + j/1000, queries = -upe when
//     the model has them, summary "s<i>"),
//     printing "ack <i>".
//   embsum_store_crash_helper items DATA_DIR COUNT
//     upserts items "crash-<i>" (cpe[j] = i + j/1000, keys = -cpe) and
//     deletes ingested item "N<i+1>" every third step, printing "ack <i>";
//     checkpoints often (every 4 log entries) so kills land in them too.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "store/data_dir.h"

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "crash_helper: %s\n", std::string(s.message()).c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace embsum::store;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s users|items DATA_DIR COUNT\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const int count = std::atoi(argv[3]);
  DataDirOptions options;
  options.items.checkpoint_min_entries = 4;
  options.items.checkpoint_fraction = 0;
  options.items.min_headroom_rows = 3;
  auto dir = DataDir::Open(argv[2], options);
  if (!dir.ok()) return Fail(dir.status());
  const ModelManifest& m = (*dir)->manifest();
  for (int i = 0; i < count; ++i) {
    const std::string id = "crash-" + std::to_string(i);
    if (mode == "users") {
      UserUpsert u;
      u.user_id = id;
      u.upe.resize(size_t{m.user_codes} * m.dim);
      for (size_t j = 0; j < u.upe.size(); ++j) u.upe[j] = i + j / 1000.0f;
      if (m.user_queries) {
        for (float v : u.upe) u.queries.push_back(-v);
      }
      u.summary = "s" + std::to_string(i);
      absl::Status s = (*dir)->users().Upsert({&u, 1});
      if (!s.ok()) return Fail(s);
    } else {
      ItemUpsert item;
      item.item_id = id;
      item.cpe.resize(size_t{m.item_codes} * m.dim);
      for (size_t j = 0; j < item.cpe.size(); ++j)
        item.cpe[j] = i + j / 1000.0f;
      if (m.item_keys) {
        for (float v : item.cpe) item.keys.push_back(-v);
      }
      absl::Status s = (*dir)->items().Upsert({&item, 1});
      if (!s.ok()) return Fail(s);
      if (i % 3 == 2) {
        std::string victim = "N" + std::to_string(i + 1);
        auto deleted = (*dir)->items().Delete({&victim, 1});
        if (!deleted.ok()) return Fail(deleted.status());
      }
    }
    std::printf("ack %d\n", i);
    std::fflush(stdout);
  }
  return 0;
}
