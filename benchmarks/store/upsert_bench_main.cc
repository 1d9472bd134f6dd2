// embsum-bench-upsert: the cost of a small item write against catalogue
// size (issue 15, item 4). Builds a catalogue of --items items (small
// shape by default: what matters is the item count), then times
// --writes single-item upserts of new ids and as many single-item deletes,
// and, as the floor in the same run, a synced one-entry RocksDB write of
// the same size (every acknowledged write pays one). The in-memory part of a
// write (building the next snapshot: rows, id map, liveness, ANN) is timed
// up to the catalogue's "upsert:log" / "delete:log" step (the fault hook,
// which here only records the time), so the file system's fsync jitter
// does not hide it. As a peer, the same run times what the earlier
// catalogue did on every write: copy an id -> row hash map of all items and
// a capacity-sized live mask. Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "datagen/synthetic_model.h"
#include "nlohmann/json.hpp"
#include "rocksdb/db.h"
#include "store/data_dir.h"

ABSL_FLAG(std::string, work_dir, "/tmp/embsum-bench-upsert",
          "Scratch directory (model, data dir, floor database).");
ABSL_FLAG(uint64_t, items, 100000, "Items in the catalogue.");
ABSL_FLAG(uint32_t, dim, 8, "d.");
ABSL_FLAG(uint32_t, item_codes, 2, "n.");
ABSL_FLAG(uint64_t, writes, 200, "Timed single-item upserts (and deletes).");
ABSL_FLAG(bool, ann, true, "Build the ANN index (IVF above 50000 items).");

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

nlohmann::json Summary(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double p) {
    return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))];
  };
  return {{"p50_us", at(0.5)}, {"p90_us", at(0.9)}, {"max_us", us.back()}};
}

int Die(const std::string& what) {
  std::fprintf(stderr, "embsum-bench-upsert: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace embsum::store;
  absl::ParseCommandLine(argc, argv);
  const std::string work = absl::GetFlag(FLAGS_work_dir);
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  embsum::datagen::SyntheticModelOptions o;
  o.out_dir = work + "/model";
  o.users = 10;
  o.items = absl::GetFlag(FLAGS_items);
  o.dim = absl::GetFlag(FLAGS_dim);
  o.user_codes = 2;
  o.item_codes = absl::GetFlag(FLAGS_item_codes);
  o.impressions = 0;
  if (absl::Status s = embsum::datagen::GenerateSyntheticModel(o); !s.ok()) {
    return Die(std::string(s.message()));
  }
  IngestOptions io;
  io.model_dir = o.out_dir;
  io.data_dir = work + "/data";
  if (absl::Status s = Ingest(io); !s.ok()) {
    return Die(std::string(s.message()));
  }
  DataDirOptions options;
  options.items.ann.enabled = absl::GetFlag(FLAGS_ann);
  // No automatic checkpoint inside the timed writes (it is amortised
  // separately: O(N) every max(4096, N/10) entries).
  options.items.checkpoint_min_entries = size_t{1} << 40;
  Clock::time_point logged;
  // The store's step hook marks when a write is durable in the item log.
  DataDirTestingHooks hooks;
  hooks.items.fault = [&](std::string_view step) {
    if (step == "upsert:log" || step == "delete:log") logged = Clock::now();
    return absl::OkStatus();
  };
  auto start = Clock::now();
  auto dir = DataDir::Open(io.data_dir, options, hooks);
  if (!dir.ok()) return Die(std::string(dir.status().message()));
  const double open_s = Since(start);
  ItemCatalog& items = (*dir)->items();

  const size_t values = size_t{o.item_codes} * o.dim;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  const uint64_t writes = absl::GetFlag(FLAGS_writes);
  std::vector<double> upsert_us, delete_us, floor_us, upsert_build_us,
      delete_build_us, peer_us;
  for (uint64_t i = 0; i < writes; ++i) {
    ItemUpsert item;
    item.item_id = "bench-" + std::to_string(i);
    item.cpe.resize(values);
    item.keys.resize(values);
    for (float& v : item.cpe) v = normal(rng);
    for (float& v : item.keys) v = normal(rng);
    auto t = Clock::now();
    if (absl::Status s = items.Upsert({&item, 1}); !s.ok()) {
      return Die(std::string(s.message()));
    }
    upsert_us.push_back(Since(t) * 1e6);
    upsert_build_us.push_back(
        std::chrono::duration<double>(logged - t).count() * 1e6);
  }
  for (uint64_t i = 0; i < writes; ++i) {
    std::vector<std::string> id = {"N" + std::to_string(i + 1)};
    auto t = Clock::now();
    auto deleted = items.Delete(id);
    if (!deleted.ok()) return Die(std::string(deleted.status().message()));
    delete_us.push_back(Since(t) * 1e6);
    delete_build_us.push_back(
        std::chrono::duration<double>(logged - t).count() * 1e6);
  }
  // Peer: the earlier per-write copy of the whole id map and live mask.
  {
    auto snap = items.Current();
    absl::flat_hash_map<std::string_view, uint32_t> map;
    map.reserve(snap->size());
    for (uint32_t r = 0; r < snap->rows(); ++r) {
      if (snap->IsLive(r)) map.emplace(snap->ItemId(r), r);
    }
    std::vector<uint8_t> live(snap->arena().capacity(), 1);
    for (int i = 0; i < 20; ++i) {
      auto t = Clock::now();
      absl::flat_hash_map<std::string_view, uint32_t> map_copy = map;
      std::vector<uint8_t> live_copy = live;
      peer_us.push_back(Since(t) * 1e6);
      if (map_copy.size() + live_copy.size() == 0) return Die("empty");
    }
  }
  // Floor: one synced RocksDB write of an entry of the same size, in the
  // same file system.
  {
    rocksdb::Options ro;
    ro.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(ro, work + "/floor", &raw);
    if (!s.ok()) return Die(s.ToString());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value(12 + 2 * values * sizeof(float), 'x');
    rocksdb::WriteOptions wo;
    wo.sync = true;
    for (uint64_t i = 0; i < writes; ++i) {
      auto t = Clock::now();
      s = db->Put(wo, "bench-" + std::to_string(i), value);
      if (!s.ok()) return Die(s.ToString());
      floor_us.push_back(Since(t) * 1e6);
    }
  }
  nlohmann::json out = {
      {"items", o.items},
      {"dim", o.dim},
      {"item_codes", o.item_codes},
      {"ann", absl::GetFlag(FLAGS_ann)},
      {"open_seconds", open_s},
      {"writes", writes},
      {"upsert_1", Summary(upsert_us)},
      {"delete_1", Summary(delete_us)},
      {"upsert_1_before_log", Summary(upsert_build_us)},
      {"delete_1_before_log", Summary(delete_build_us)},
      {"peer_full_map_and_mask_copy", Summary(peer_us)},
      {"synced_log_write_floor", Summary(floor_us)},
  };
  out["upsert_p50_ratio_to_floor"] =
      out["upsert_1"]["p50_us"].get<double>() /
      out["synced_log_write_floor"]["p50_us"].get<double>();
  out["peer_p50_over_upsert_before_log_p50"] =
      out["peer_full_map_and_mask_copy"]["p50_us"].get<double>() /
      out["upsert_1_before_log"]["p50_us"].get<double>();
  std::printf("%s\n", out.dump().c_str());
  std::filesystem::remove_all(work);
  return 0;
}
