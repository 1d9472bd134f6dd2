// Where embsum-loadgen's requests come from: users and candidate lists drawn
// from a docs/design.md section 3 artifact (users/ids.txt, items/ids.txt) with
// a configurable candidate-count distribution, or replayed from MIND-format
// impressions. Requests are built once, before the run, into a pool of
// serialized messages, so the client spends no CPU building them while it
// measures. Thread-safety: a built RequestPool is immutable and safe to read
// from any thread.
#ifndef EMBSUM_LOADGEN_REQUEST_SOURCE_H_
#define EMBSUM_LOADGEN_REQUEST_SOURCE_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loadgen/behaviors.h"

namespace embsum::loadgen {

// Candidate-list sizes. Spec strings (the --candidates flag):
//   "500"                    every request has 500 candidates
//   "uniform:100:1000"       uniform integer in [100, 1000]
//   "lognormal:500:0.5"      log-normal with median 500 and sigma 0.5,
//                            rounded and clamped to [1, 100000]
// Sizes larger than the catalogue are clamped to the catalogue size.
class CandidateCount {
 public:
  static absl::StatusOr<CandidateCount> Parse(absl::string_view spec);

  uint32_t Draw(std::mt19937_64& rng) const;
  // The spec in canonical form, for reports.
  std::string ToString() const;

 private:
  enum class Kind { kFixed, kUniform, kLogNormal };
  Kind kind_ = Kind::kFixed;
  uint32_t a_ = 0;  // fixed value, uniform low, or log-normal median
  uint32_t b_ = 0;  // uniform high
  double sigma_ = 0;
};

// Which service the requests are for.
enum class TargetKind { kRank, kEcho };

struct RequestPoolOptions {
  TargetKind kind = TargetKind::kRank;
  // Number of distinct requests to build; the drivers cycle through them.
  // More costs memory (about candidates * 12 bytes each), fewer repeats the
  // same users sooner (a warm user cache flatters the server).
  uint32_t pool_size = 2048;
  uint64_t seed = 1;
  uint32_t top_k = 0;  // RankRequest.top_k (0 = all)
  bool explain = false;
  bool include_summary = false;
  // kEcho: size of EchoResponse.payload. 0 = the size of a RankResponse that
  // returns every candidate with a score (what Rank would send back).
  uint32_t echo_response_bytes = 0;
};

// A pool of serialized requests for one gRPC method.
struct RequestPool {
  std::string method;                 // "/embsum.v1.Ranker/Rank" or Echo's
  std::vector<std::string> payloads;  // serialized request messages
  // The user id of each payload, sent as the x-user-id header (Envoy's
  // consistent-hash key, docs/design.md section 9); Echo calls carry it too, so
  // the floor pays for the same header. Empty for an id that is not a valid
  // header value (UserIdHeader): such calls go without it.
  std::vector<std::string> user_ids;
  double mean_candidates = 0;
  double mean_request_bytes = 0;     // serialized size of the Rank request
  uint32_t echo_response_bytes = 0;  // kEcho only (mean, when sizes vary)
};

// `user_id` as an x-user-id header value: itself when it is printable
// ASCII (what HTTP/2 header values allow), else "" (send no header; a
// proxy then routes the call without affinity).
std::string UserIdHeader(const std::string& user_id);

// Draws `pool_size` requests: a uniformly random user from `user_ids` and
// CandidateCount::Draw distinct uniformly random items from `item_ids`.
absl::StatusOr<RequestPool> BuildPoolFromIds(
    const std::vector<std::string>& user_ids,
    const std::vector<std::string>& item_ids, const CandidateCount& count,
    const RequestPoolOptions& options);

// Reads MODEL_DIR/users/ids.txt and MODEL_DIR/items/ids.txt and calls
// BuildPoolFromIds.
absl::StatusOr<RequestPool> BuildPoolFromModelDir(
    const std::string& model_dir, const CandidateCount& count,
    const RequestPoolOptions& options);

// One request per impression, in file order, up to pool_size (0 = all).
absl::StatusOr<RequestPool> BuildPoolFromImpressions(
    const std::vector<Impression>& impressions,
    const RequestPoolOptions& options);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_REQUEST_SOURCE_H_
