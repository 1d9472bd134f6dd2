// embsum-bench-store: measures the store at a given shape and prints what it
// measured, then one JSON object on stdout:
//   datagen -> ingest (users and items rows/s) -> open (item arena load,
//   with and without the ANN index) -> cached user Get / MultiGet latency.
//
//   embsum-bench-store --work_dir=/tmp/bench --users=10000 --items=100000
//     --dim=512 --user_codes=32 --item_codes=8
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "datagen/synthetic_model.h"
#include "nlohmann/json.hpp"
#include "store/data_dir.h"

ABSL_FLAG(std::string, work_dir, "/tmp/embsum-bench-store",
          "Scratch directory (model/ and data/ inside).");
ABSL_FLAG(uint64_t, users, 10000, "Users.");
ABSL_FLAG(uint64_t, items, 100000, "Items.");
ABSL_FLAG(uint32_t, dim, 512, "d.");
ABSL_FLAG(uint32_t, user_codes, 32, "m.");
ABSL_FLAG(uint32_t, item_codes, 8, "n.");
ABSL_FLAG(bool, keys, true, "Items have attention keys (and users queries).");
ABSL_FLAG(bool, reuse_model, false,
          "Reuse work_dir/model when present instead of regenerating it.");
ABSL_FLAG(std::string, arena_dtype, "fp32",
          "Item arena dtype: fp32|fp16|bf16.");
ABSL_FLAG(uint64_t, lookups, 20000, "Timed Get calls.");
ABSL_FLAG(uint32_t, batch, 32, "Users per MultiGet call.");
ABSL_FLAG(uint64_t, block_cache_mb, 4096, "RocksDB block cache.");

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * v.size()));
  return v[i];
}

int Die(const absl::Status& s) {
  std::fprintf(stderr, "embsum-bench-store: %s\n",
               std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace embsum::store;
  absl::ParseCommandLine(argc, argv);
  const std::string work = absl::GetFlag(FLAGS_work_dir);
  const std::string model = work + "/model";
  const std::string data = work + "/data";
  std::filesystem::create_directories(work);

  double datagen_s = 0;
  if (!absl::GetFlag(FLAGS_reuse_model) ||
      !std::filesystem::exists(model + "/manifest.json")) {
    std::filesystem::remove_all(model);
    embsum::datagen::SyntheticModelOptions o;
    o.out_dir = model;
    o.users = absl::GetFlag(FLAGS_users);
    o.items = absl::GetFlag(FLAGS_items);
    o.dim = absl::GetFlag(FLAGS_dim);
    o.user_codes = absl::GetFlag(FLAGS_user_codes);
    o.item_codes = absl::GetFlag(FLAGS_item_codes);
    o.user_queries = o.item_keys = absl::GetFlag(FLAGS_keys);
    o.impressions = 0;
    auto start = Clock::now();
    if (absl::Status s = embsum::datagen::GenerateSyntheticModel(o); !s.ok()) {
      return Die(s);
    }
    datagen_s = Since(start);
    std::fprintf(stderr, "datagen: %.2fs\n", datagen_s);
  }

  // Ingest: the per-phase "done" lines carry rows/s.
  double users_rps = 0, items_rps = 0;
  IngestOptions io;
  io.model_dir = model;
  io.data_dir = data;
  io.force = true;
  io.progress_interval_s = 1e9;
  io.progress = [&](const std::string& line) {
    double rate = 0;
    unsigned long long rows = 0;
    if (std::sscanf(line.c_str(), "users: %llu rows done (%lf", &rows, &rate) ==
        2) {
      users_rps = rate;
    } else if (std::sscanf(line.c_str(), "items: %llu rows done (%lf", &rows,
                           &rate) == 2) {
      items_rps = rate;
    }
  };
  auto start = Clock::now();
  if (absl::Status s = Ingest(io); !s.ok()) return Die(s);
  const double ingest_s = Since(start);
  std::fprintf(stderr, "ingest: %.2fs (users %.0f rows/s, items %.0f rows/s)\n",
               ingest_s, users_rps, items_rps);

  DataDirOptions options;
  options.users.block_cache_bytes = absl::GetFlag(FLAGS_block_cache_mb) << 20;
  auto dtype = embsum::scoring::ParseDType(absl::GetFlag(FLAGS_arena_dtype));
  if (!dtype) return Die(absl::InvalidArgumentError("bad --arena_dtype"));
  options.items.dtype = *dtype;

  // Item arena load alone (no ANN index), then the default open.
  options.items.ann.enabled = false;
  start = Clock::now();
  double load_s = 0;
  {
    auto dir = DataDir::Open(data, options);
    if (!dir.ok()) return Die(dir.status());
    load_s = Since(start);
  }
  options.items.ann.enabled = true;
  start = Clock::now();
  auto dir = DataDir::Open(data, options);
  if (!dir.ok()) return Die(dir.status());
  const double open_s = Since(start);
  std::fprintf(stderr, "open: %.2fs without ANN index, %.2fs with it\n", load_s,
               open_s);

  // Cached Get latency: warm every user first, then random lookups.
  const uint64_t users = (*dir)->users().size();
  UserEmbedding e;
  for (uint64_t u = 0; u < users; ++u) {
    if (absl::Status s = (*dir)->users().Get("U" + std::to_string(u + 1), &e);
        !s.ok()) {
      return Die(s);
    }
  }
  std::mt19937_64 rng(1);
  std::vector<std::string> ids(absl::GetFlag(FLAGS_lookups));
  for (auto& id : ids) id = "U" + std::to_string(rng() % users + 1);
  std::vector<double> get_us;
  get_us.reserve(ids.size());
  for (const std::string& id : ids) {
    auto t = Clock::now();
    absl::Status s = (*dir)->users().Get(id, &e);
    get_us.push_back(Since(t) * 1e6);
    if (!s.ok()) return Die(s);
  }
  const uint32_t batch = std::max(1u, absl::GetFlag(FLAGS_batch));
  std::vector<double> multiget_us;
  std::vector<UserEmbedding> out;
  std::vector<absl::Status> statuses;
  for (size_t i = 0; i + batch <= ids.size(); i += batch) {
    std::vector<std::string_view> keys(ids.begin() + i,
                                       ids.begin() + i + batch);
    auto t = Clock::now();
    (*dir)->users().MultiGet(keys, &out, &statuses);
    multiget_us.push_back(Since(t) * 1e6);
  }
  std::fprintf(stderr,
               "Get: p50 %.1f us, p99 %.1f us; MultiGet(%u): p50 %.1f us "
               "(%.1f us/user), p99 %.1f us\n",
               Percentile(get_us, 0.5), Percentile(get_us, 0.99), batch,
               Percentile(multiget_us, 0.5),
               Percentile(multiget_us, 0.5) / batch,
               Percentile(multiget_us, 0.99));
  // Field names are read by scripts and docs/store.md: keep them.
  nlohmann::ordered_json report;
  report["users"] = users;
  report["items"] = static_cast<uint64_t>((*dir)->items().Current()->size());
  report["dim"] = absl::GetFlag(FLAGS_dim);
  report["user_codes"] = absl::GetFlag(FLAGS_user_codes);
  report["item_codes"] = absl::GetFlag(FLAGS_item_codes);
  report["keys"] = absl::GetFlag(FLAGS_keys);
  report["arena_dtype"] = absl::GetFlag(FLAGS_arena_dtype);
  report["datagen_seconds"] = datagen_s;
  report["ingest_seconds"] = ingest_s;
  report["ingest_users_rows_per_second"] = users_rps;
  report["ingest_items_rows_per_second"] = items_rps;
  report["item_arena_load_seconds"] = load_s;
  report["open_with_ann_seconds"] = open_s;
  report["get_us_p50"] = Percentile(get_us, 0.5);
  report["get_us_p99"] = Percentile(get_us, 0.99);
  report["multiget_batch"] = batch;
  report["multiget_us_p50"] = Percentile(multiget_us, 0.5);
  report["multiget_us_p99"] = Percentile(multiget_us, 0.99);
  report["multiget_us_per_user_p50"] = Percentile(multiget_us, 0.5) / batch;
  std::printf(
      "%s\n",
      report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
          .c_str());
  return 0;
}
