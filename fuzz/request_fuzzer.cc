// Fuzzes what a client controls before any store is touched: the wire bytes
// of a RankRequest or RetrieveRequest (first input byte picks which) through
// protobuf parsing and RankerCore's validation. An accepted request must
// respect the limits the server promises (id length, candidate count, k).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "server/ranker_core.h"

namespace {

constexpr uint32_t kMaxCandidates = 100;

const embsum::server::RankerCore& Core() {
  static const auto* core = [] {
    embsum::server::RankerCoreOptions options;
    options.max_candidates = kMaxCandidates;
    embsum::store::ModelManifest manifest;
    manifest.dim = 8;
    manifest.user_codes = 2;
    manifest.item_codes = 2;
    // Validation needs no store: the core never dereferences them here.
    return new embsum::server::RankerCore(options, manifest, nullptr, nullptr,
                                          nullptr, nullptr);
  }();
  return *core;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool rank = (data[0] & 1) == 0;
  if (rank) {
    embsum::v1::RankRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) {
      return 0;
    }
    absl::Status s = Core().ValidateRank(request);
    if (s.ok()) {
      Check(IdOk(request.user_id()), "accepted a bad user_id");
      Check(request.candidate_ids_size() <= static_cast<int>(kMaxCandidates),
            "accepted too many candidates");
    } else {
      Check(s.code() == absl::StatusCode::kInvalidArgument,
            "validation failed with a code other than INVALID_ARGUMENT");
    }
  } else {
    embsum::v1::RetrieveRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) {
      return 0;
    }
    absl::Status s = Core().ValidateRetrieve(request);
    if (s.ok()) {
      Check(IdOk(request.user_id()), "accepted a bad user_id");
      Check(request.k() >= 1 && request.k() <= kMaxCandidates, "bad k");
      Check(request.exclude_item_ids_size() <= static_cast<int>(kMaxCandidates),
            "accepted too many exclusions");
    } else {
      Check(s.code() == absl::StatusCode::kInvalidArgument,
            "validation failed with a code other than INVALID_ARGUMENT");
    }
  }
  return 0;
}
