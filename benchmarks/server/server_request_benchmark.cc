// The server's Rank request path without gRPC: parse the request bytes,
// RankerCore::Rank (user lookup, id dedup and lookups, scoring, top-k,
// results), serialize the response. docs/server.md "Request-path cost".
//
//   embsum_server_request_benchmark [--data_dir=DIR] [benchmark flags]
//
// Without --data_dir it generates and ingests a synthetic model of shape S1
// (m=32, n=8, d=512, 2000 items) into a temporary directory (removed at the
// end). Pass a data directory made by embsum-ingest to skip that (e.g. under
// callgrind).
//
// BM_RankRequestPath/candidates:C/scorer:S/arena:A
//   scorer:2  the real CPU scorer with two threads (the caller and one
//             helper of its pool, as embsum-server runs it on 2 cores)
//   scorer:1  the real CPU scorer (one thread)
//   scorer:0  a scorer that only writes a cheap per-row score: the request
//             path's own cost, scoring excluded
//   arena:0   request and response on the heap (gRPC's default allocator)
//   arena:1   on a per-call arena, as embsum-server does
//             (server/arena_allocator.h)
// Counters: the mean of each RankTimings phase per request (user_us,
// lookup_us, score_us, top_k_us, response_us) and the rest of HandleRank
// (parse and serialize, parse_serialize_us).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "datagen/synthetic_model.h"
#include "embsum/v1/ranking.pb.h"
#include "scoring/internal/thread_pool.h"
#include "scoring/scorer.h"
#include "server/arena_allocator.h"
#include "server/ranker_core.h"
#include "store/data_dir.h"

namespace embsum::server {
namespace {

constexpr uint64_t kItems = 2000;

// Scores row r as a fixed function of r: costs nothing next to the
// request path, yet gives distinct, reproducible scores for top-k.
class RowScorer final : public scoring::Scorer {
 public:
  std::string_view backend() const override { return "row"; }
  scoring::Status Score(const scoring::UserView&, const scoring::ItemArena&,
                        std::span<const uint32_t> rows, std::span<float> scores,
                        std::span<int32_t> top_codes) const override {
    for (size_t i = 0; i < rows.size(); ++i) {
      scores[i] = static_cast<float>((rows[i] * 2654435761u) >> 8);
      if (!top_codes.empty()) top_codes[i] = 0;
    }
    return scoring::Status::Ok();
  }
  scoring::Status ScoreAllTopK(
      const scoring::UserView&, const scoring::ItemArena&,
      std::span<const uint8_t>, uint32_t,
      std::vector<scoring::ScoredRow>* out) const override {
    out->clear();
    return scoring::Status::Ok();
  }
};

struct Fixture {
  std::unique_ptr<ModelSlot> models;
  std::unique_ptr<scoring::Scorer> cpu;
  std::unique_ptr<scoring::Scorer> cpu2;
  RowScorer row;
  std::unique_ptr<RankerCore> cpu_core;
  std::unique_ptr<RankerCore> cpu2_core;
  std::unique_ptr<RankerCore> row_core;
  std::vector<std::string> item_ids;  // live items, row order
};

Fixture* g_fixture = nullptr;

// Makes a temporary directory holding model/ and data/; returns its path.
std::string MakeModelRoot() {
  char pattern[] = "/tmp/embsum-server-bench-XXXXXX";
  const char* root = mkdtemp(pattern);
  if (root == nullptr) {
    std::cerr << "mkdtemp failed\n";
    std::exit(1);
  }
  datagen::SyntheticModelOptions model;
  model.out_dir = std::string(root) + "/model";
  model.users = 8;
  model.items = kItems;
  model.dim = 512;
  model.user_codes = 32;
  model.item_codes = 8;
  model.impressions = 1;
  model.impression_size = 2;
  if (absl::Status s = datagen::GenerateSyntheticModel(model); !s.ok()) {
    std::cerr << s << "\n";
    std::exit(1);
  }
  store::IngestOptions ingest;
  ingest.model_dir = model.out_dir;
  ingest.data_dir = std::string(root) + "/data";
  if (absl::Status s = store::Ingest(ingest); !s.ok()) {
    std::cerr << s << "\n";
    std::exit(1);
  }
  return root;
}

void SetUp(const std::string& data_dir) {
  auto* f = new Fixture;
  auto data = store::DataDir::Open(data_dir, {});
  if (!data.ok()) {
    std::cerr << data.status() << "\n";
    std::exit(1);
  }
  auto model = std::make_shared<const ServingModel>(*std::move(data), 1);
  f->models = std::make_unique<ModelSlot>(model);
  scoring::CpuScorerOptions cpu_options;
  cpu_options.threads = 1;
  f->cpu = scoring::MakeCpuScorer(cpu_options);
  f->cpu_core = std::make_unique<RankerCore>(
      RankerCoreOptions{}, f->models.get(), f->cpu.get(), nullptr);
  cpu_options.threads = 2;
  f->cpu2 = scoring::MakeCpuScorer(cpu_options);
  f->cpu2_core = std::make_unique<RankerCore>(
      RankerCoreOptions{}, f->models.get(), f->cpu2.get(), nullptr);
  f->row_core = std::make_unique<RankerCore>(RankerCoreOptions{},
                                             f->models.get(), &f->row, nullptr);
  auto snapshot = model->items().Current();
  const std::span<const uint8_t> live = snapshot->live();
  for (uint32_t r = 0; r < snapshot->arena().size() && r < live.size(); ++r) {
    if (live[r] != 0) f->item_ids.push_back(snapshot->ItemId(r));
  }
  g_fixture = f;
}

using RankAllocator = ArenaMessageAllocator<v1::RankRequest, v1::RankResponse>;

// One request as a server worker sees it: bytes in, bytes out, the messages
// either on the heap (gRPC's default) or on the server's per-call arena.
// Not inlined, so that callgrind can count it (--toggle-collect=*HandleRank*).
[[gnu::noinline]] bool HandleRank(const RankerCore& core, bool arena,
                                  const std::string& request_bytes,
                                  std::string* response_bytes,
                                  RankTimings* timings) {
  if (arena) {
    static RankAllocator allocator;
    grpc::MessageHolder<v1::RankRequest, v1::RankResponse>* holder =
        allocator.AllocateMessages();
    const bool ok =
        holder->request()->ParseFromString(request_bytes) &&
        core.Rank(*holder->request(), holder->response(), timings).ok() &&
        holder->response()->SerializeToString(response_bytes);
    holder->Release();
    return ok;
  }
  v1::RankRequest request;
  if (!request.ParseFromString(request_bytes)) return false;
  v1::RankResponse response;
  if (!core.Rank(request, &response, timings).ok()) return false;
  return response.SerializeToString(response_bytes);
}

// Args: candidates, real scorer (1) or RowScorer (0), heap (0) or arena (1)
// messages.
void BM_RankRequestPath(benchmark::State& state) {
  const Fixture& f = *g_fixture;
  const size_t candidates = static_cast<size_t>(state.range(0));
  const RankerCore& core = state.range(1) == 2   ? *f.cpu2_core
                           : state.range(1) == 1 ? *f.cpu_core
                                                 : *f.row_core;
  const bool arena = state.range(2) != 0;
  v1::RankRequest request;
  request.set_user_id("U1");
  // Spread over the catalogue, as a real candidate set would be.
  const size_t stride = f.item_ids.size() / candidates;
  for (size_t i = 0; i < candidates; ++i) {
    request.add_candidate_ids(f.item_ids[i * stride]);
  }
  const std::string request_bytes = request.SerializeAsString();
  std::string response_bytes;
  RankTimings t;
  if (!HandleRank(core, arena, request_bytes, &response_bytes, &t)) {
    state.SkipWithError("Rank failed");
    return;
  }
  RankTimings sum;
  double total = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(
        HandleRank(core, arena, request_bytes, &response_bytes, &t));
    total +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    sum.user += t.user;
    sum.lookup += t.lookup;
    sum.score += t.score;
    sum.top_k += t.top_k;
    sum.response += t.response;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["user_us"] = sum.user / n * 1e6;
  state.counters["lookup_us"] = sum.lookup / n * 1e6;
  state.counters["score_us"] = sum.score / n * 1e6;
  state.counters["top_k_us"] = sum.top_k / n * 1e6;
  state.counters["response_us"] = sum.response / n * 1e6;
  state.counters["parse_serialize_us"] =
      (total - sum.user - sum.lookup - sum.score - sum.top_k - sum.response) /
      n * 1e6;
  state.counters["response_bytes"] = static_cast<double>(response_bytes.size());
  state.SetItemsProcessed(state.iterations() *
                          static_cast<int64_t>(candidates));
}
BENCHMARK(BM_RankRequestPath)
    ->ArgNames({"candidates", "scorer", "arena"})
    ->ArgsProduct({{1, 500}, {0, 1, 2}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

// The hand-off to the scorer's threads alone, on a pool of one helper under
// a 2-core budget. tasks:1 runs inline. tasks:2: task 0 waits (spinning)
// until task 1 has run, so the helper must wake up and run task 1: the
// time per call is the wake-up plus the join that a parallel Score pays.
void BM_ScorerHandOff(benchmark::State& state) {
  static scoring::internal::ThreadPool pool(1, 2);
  const size_t tasks = static_cast<size_t>(state.range(0));
  std::atomic<bool> second_done{false};
  const std::function<void(size_t)> task = [&](size_t i) {
    if (tasks == 1) return;
    if (i == 1) {
      second_done.store(true, std::memory_order_release);
    } else {
      while (!second_done.load(std::memory_order_acquire)) {
      }
    }
  };
  const scoring::internal::ThreadPool::Stats before = pool.stats();
  for (auto _ : state) {
    second_done.store(false, std::memory_order_relaxed);
    pool.ParallelFor(tasks, task);
  }
  const scoring::internal::ThreadPool::Stats after = pool.stats();
  state.counters["helper_tasks_per_call"] =
      static_cast<double>(after.helper_tasks - before.helper_tasks) /
      static_cast<double>(state.iterations());
}
BENCHMARK(BM_ScorerHandOff)
    ->ArgName("tasks")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace embsum::server

int main(int argc, char** argv) {
  std::string data_dir;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--data_dir=")) {
      data_dir = std::string(arg.substr(11));
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  std::string generated;  // removed at the end
  if (data_dir.empty()) {
    generated = embsum::server::MakeModelRoot();
    data_dir = generated + "/data";
  }
  embsum::server::SetUp(data_dir);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!generated.empty()) {
    delete embsum::server::g_fixture;  // closes the stores first
    std::error_code ec;
    std::filesystem::remove_all(generated, ec);
  }
  return 0;
}
