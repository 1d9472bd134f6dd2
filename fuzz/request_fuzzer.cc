// Fuzzes what a client controls: the wire bytes of a RankRequest or
// RetrieveRequest (first input byte picks which) through protobuf parsing,
// RankerCore's validation and, for every request validation accepts, the
// full Rank / Retrieve against a real data directory: a small synthetic
// model (4 users U1..U4, 6 items N1..N6, d=4, m=n=2, seed 1: the model the
// seeds in fuzz/corpus/request were made from) ingested into a temporary
// directory at start-up, RocksDB user store, FAISS item catalogue and the
// CPU scorer.
//
// Invariants beyond "no crash, no sanitizer report":
//  - validation refuses with INVALID_ARGUMENT only, and what it accepts
//    respects the promised limits (id 1..256 bytes without control
//    characters, candidates / exclusions / k within max_candidates);
//  - an accepted request succeeds exactly when its user exists (else
//    NOT_FOUND);
//  - Rank answers each distinct known candidate once (top_k of them when
//    top_k > 0), each distinct unknown id once in unknown_item_ids, scores
//    sorted descending and equal to the user's score of that item computed
//    alone (a request's other candidates never change a score);
//  - Retrieve answers min(k, items not excluded) distinct known items
//    (exact) or at most that many (ANN), none excluded, sorted, each with
//    the item's own score; exact Retrieve's items are the true top k.
#include <google/protobuf/stubs/logging.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "datagen/synthetic_model.h"
#include "scoring/scorer.h"
#include "server/backend.h"
#include "server/ranker_core.h"
#include "server/serving_model.h"
#include "store/data_dir.h"

namespace {

constexpr uint32_t kMaxCandidates = 100;
constexpr int kUsers = 4;
constexpr int kItems = 6;
constexpr uint32_t kUserCodes = 2;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

void CheckOk(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "fuzz_request set-up: %s: %s\n", what,
                 s.ToString().c_str());
    std::abort();
  }
}

bool IdOk(const std::string& id) {
  if (id.empty() || id.size() > 256) return false;
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool Near(float a, float b) {
  return std::fabs(a - b) <= 1e-5f * std::max(1.0f, std::fabs(b));
}

// Protobuf logs an ERROR for every string field with invalid UTF-8 it is
// asked to parse: expected here, and millions of them would drown the
// fuzzer's own output. Anything else still reaches stderr.
void ProtobufLog(google::protobuf::LogLevel level, const char* filename,
                 int line, const std::string& message) {
  if (message.find("invalid UTF-8") != std::string::npos) return;
  std::fprintf(stderr, "[protobuf %d %s:%d] %s\n", static_cast<int>(level),
               filename, line, message.c_str());
}

std::string g_root;  // removed at exit

void RemoveRoot() {
  std::error_code error;
  std::filesystem::remove_all(g_root, error);
}

struct Fixture {
  std::unique_ptr<embsum::scoring::Scorer> scorer;
  std::shared_ptr<const embsum::server::ServingModel> model;
  std::unique_ptr<embsum::server::ModelSlot> models;
  std::unique_ptr<embsum::server::RankerCore> core;
  // score[user_id][item_id]: each item scored alone (exact Retrieve of all).
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, float>>
      score;
};

const Fixture& Setup() {
  static const Fixture* fixture = [] {
    google::protobuf::SetLogHandler(&ProtobufLog);
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") +
                          "/embsum-fuzz-request-XXXXXX";
    Check(mkdtemp(pattern.data()) != nullptr, "mkdtemp failed");
    g_root = pattern;
    std::atexit(RemoveRoot);

    embsum::datagen::SyntheticModelOptions model;
    model.out_dir = g_root + "/model";
    model.users = kUsers;
    model.items = kItems;
    model.dim = 4;
    model.user_codes = kUserCodes;
    model.item_codes = 2;
    model.seed = 1;
    model.impressions = 4;
    model.impression_size = 3;
    CheckOk(embsum::datagen::GenerateSyntheticModel(model), "datagen");
    embsum::store::IngestOptions ingest;
    ingest.model_dir = model.out_dir;
    ingest.data_dir = g_root + "/data";
    CheckOk(embsum::store::Ingest(ingest), "ingest");

    auto* f = new Fixture;
    embsum::scoring::CpuScorerOptions scorer_options;
    scorer_options.threads = 1;
    f->scorer = embsum::scoring::MakeCpuScorer(scorer_options);
    embsum::store::DataDirOptions data_options;
    data_options.users.block_cache_bytes = size_t{1} << 20;
    absl::StatusOr<std::unique_ptr<embsum::store::DataDir>> data =
        embsum::store::DataDir::Open(ingest.data_dir, data_options);
    CheckOk(data.status(), "open data dir");
    f->model = std::make_shared<const embsum::server::ServingModel>(
        *std::move(data), 1);
    CheckOk(embsum::server::AttachScorer(f->scorer.get(), &f->model->items()),
            "attach scorer");
    f->models = std::make_unique<embsum::server::ModelSlot>(f->model);
    embsum::server::RankerCoreOptions options;
    options.max_candidates = kMaxCandidates;
    options.max_retrieve_k = kMaxCandidates;
    f->core = std::make_unique<embsum::server::RankerCore>(
        options, f->models.get(), f->scorer.get(), nullptr);

    for (int u = 1; u <= kUsers; ++u) {
      const std::string user = "U" + std::to_string(u);
      embsum::v1::RetrieveRequest request;
      request.set_user_id(user);
      request.set_k(kItems);
      request.set_exact(true);
      embsum::v1::RetrieveResponse response;
      CheckOk(f->core->Retrieve(request, &response), "score table");
      Check(response.items_size() == kItems, "score table incomplete");
      for (const embsum::v1::ScoredItem& item : response.items()) {
        f->score[user][item.item_id()] = item.score();
      }
    }
    return f;
  }();
  return *fixture;
}

bool KnownUser(const std::string& id) { return Setup().score.contains(id); }

bool KnownItem(const std::string& id) {
  return Setup().score.at("U1").contains(id);
}

template <typename Items>
void CheckSorted(const Items& items) {
  for (int i = 1; i < items.size(); ++i) {
    Check(!(items[i - 1].score() < items[i].score()), "scores not sorted");
  }
}

void FuzzRank(const embsum::v1::RankRequest& request) {
  const Fixture& f = Setup();
  absl::Status s = f.core->ValidateRank(request);
  if (!s.ok()) {
    Check(s.code() == absl::StatusCode::kInvalidArgument,
          "validation failed with a code other than INVALID_ARGUMENT");
    embsum::v1::RankResponse response;
    Check(f.core->Rank(request, &response).code() == s.code(),
          "Rank disagrees with ValidateRank");
    return;
  }
  Check(IdOk(request.user_id()), "accepted a bad user_id");
  Check(request.candidate_ids_size() <= static_cast<int>(kMaxCandidates),
        "accepted too many candidates");

  embsum::v1::RankResponse response;
  s = f.core->Rank(request, &response);
  if (!KnownUser(request.user_id())) {
    Check(s.code() == absl::StatusCode::kNotFound,
          "unknown user not NOT_FOUND");
    return;
  }
  Check(s.ok(), "Rank failed for a known user");

  absl::flat_hash_set<std::string> known, unknown;
  for (const std::string& id : request.candidate_ids()) {
    (KnownItem(id) ? known : unknown).insert(id);
  }
  size_t want = known.size();
  if (request.top_k() > 0) want = std::min<size_t>(want, request.top_k());
  Check(static_cast<size_t>(response.items_size()) == want,
        "Rank answered the wrong number of items");
  Check(static_cast<size_t>(response.unknown_item_ids_size()) == unknown.size(),
        "unknown_item_ids count wrong");
  for (const std::string& id : response.unknown_item_ids()) {
    Check(unknown.contains(id), "unknown_item_ids has a known or foreign id");
  }
  absl::flat_hash_set<std::string> seen;
  const auto& scores = f.score.at(request.user_id());
  for (const embsum::v1::ScoredItem& item : response.items()) {
    Check(known.contains(item.item_id()), "Rank answered a foreign item");
    Check(seen.insert(item.item_id()).second, "Rank answered an item twice");
    Check(Near(item.score(), scores.at(item.item_id())),
          "Rank score differs from the item's score alone");
    if (request.explain()) {
      Check(item.top_user_code() >= 0 &&
                item.top_user_code() < static_cast<int32_t>(kUserCodes),
            "top_user_code out of range");
    }
  }
  CheckSorted(response.items());
  // The answered items are the best of the known candidates.
  if (response.items_size() > 0) {
    const float last = response.items(response.items_size() - 1).score();
    for (const std::string& id : known) {
      if (!seen.contains(id)) {
        Check(!(scores.at(id) > last) || Near(scores.at(id), last),
              "Rank left out a better candidate");
      }
    }
  }
  Check(request.include_summary() || response.user_summary().empty(),
        "summary without include_summary");
  Check(response.model_version() == f.model->manifest().model_version,
        "model_version missing");
}

void FuzzRetrieve(const embsum::v1::RetrieveRequest& request) {
  const Fixture& f = Setup();
  absl::Status s = f.core->ValidateRetrieve(request);
  if (!s.ok()) {
    Check(s.code() == absl::StatusCode::kInvalidArgument,
          "validation failed with a code other than INVALID_ARGUMENT");
    embsum::v1::RetrieveResponse response;
    Check(f.core->Retrieve(request, &response).code() == s.code(),
          "Retrieve disagrees with ValidateRetrieve");
    return;
  }
  Check(IdOk(request.user_id()), "accepted a bad user_id");
  Check(request.k() >= 1 && request.k() <= kMaxCandidates, "bad k");
  Check(request.exclude_item_ids_size() <= static_cast<int>(kMaxCandidates),
        "accepted too many exclusions");

  embsum::v1::RetrieveResponse response;
  s = f.core->Retrieve(request, &response);
  if (!KnownUser(request.user_id())) {
    Check(s.code() == absl::StatusCode::kNotFound,
          "unknown user not NOT_FOUND");
    return;
  }
  Check(s.ok(), "Retrieve failed for a known user");

  absl::flat_hash_set<std::string> excluded;
  for (const std::string& id : request.exclude_item_ids()) {
    if (KnownItem(id)) excluded.insert(id);
  }
  const size_t want =
      std::min<size_t>(request.k(), kItems - static_cast<int>(excluded.size()));
  if (request.exact()) {
    Check(static_cast<size_t>(response.items_size()) == want,
          "exact Retrieve answered the wrong number of items");
  } else {
    Check(static_cast<size_t>(response.items_size()) <= want,
          "Retrieve answered too many items");
  }
  absl::flat_hash_set<std::string> seen;
  const auto& scores = f.score.at(request.user_id());
  for (const embsum::v1::ScoredItem& item : response.items()) {
    Check(KnownItem(item.item_id()), "Retrieve answered a foreign item");
    Check(!excluded.contains(item.item_id()),
          "Retrieve answered an excluded item");
    Check(seen.insert(item.item_id()).second,
          "Retrieve answered an item twice");
    Check(Near(item.score(), scores.at(item.item_id())),
          "Retrieve score differs from the item's score alone");
    Check(item.top_user_code() >= 0 &&
              item.top_user_code() < static_cast<int32_t>(kUserCodes),
          "top_user_code out of range");
  }
  CheckSorted(response.items());
  if (request.exact() && response.items_size() > 0) {
    const float last = response.items(response.items_size() - 1).score();
    for (const auto& [id, score] : scores) {
      if (!seen.contains(id) && !excluded.contains(id)) {
        Check(!(score > last) || Near(score, last),
              "exact Retrieve left out a better item");
      }
    }
  }
  Check(response.model_version() == f.model->manifest().model_version,
        "model_version missing");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  Setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 1) == 0) {
    embsum::v1::RankRequest request;
    if (request.ParseFromArray(data + 1, static_cast<int>(size - 1))) {
      FuzzRank(request);
    }
  } else {
    embsum::v1::RetrieveRequest request;
    if (request.ParseFromArray(data + 1, static_cast<int>(size - 1))) {
      FuzzRetrieve(request);
    }
  }
  return 0;
}
