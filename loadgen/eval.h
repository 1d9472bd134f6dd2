// embsum-eval: ranking quality of a running server on MIND-format
// impressions. Each impression becomes one Rank(user, candidates, top_k=0);
// the returned scores are compared with the click labels (ranking_metrics.h).
// Candidates the server does not know (unknown_item_ids) rank last.
// Impressions of users the server does not know (NOT_FOUND) and impressions
// whose labels are all 0 or all 1 are skipped and counted; any other RPC
// error stops the evaluation with a message naming the line.
#ifndef EMBSUM_LOADGEN_EVAL_H_
#define EMBSUM_LOADGEN_EVAL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "embsum/v1/ranking.pb.h"
#include "loadgen/behaviors.h"
#include "loadgen/ranking_metrics.h"
#include "loadgen/tls.h"

namespace embsum::loadgen {

struct EvalOptions {
  std::string target;     // HOST:PORT of a Ranker
  std::string behaviors;  // behaviors.tsv
  uint64_t limit = 0;     // impressions to read; 0 = all
  int concurrency = 4;    // Rank calls in flight
  // Shuffle the labels within each impression (seeded): a control whose AUC
  // must come out near 0.5.
  bool shuffle_labels = false;
  uint64_t seed = 1;
  absl::Duration deadline = absl::Seconds(10);
  absl::Duration connect_timeout = absl::Seconds(10);
  TlsClientOptions tls;  // plaintext unless tls.enabled
};

struct EvalResult {
  RankingMetrics mean;       // over `evaluated` impressions
  uint64_t impressions = 0;  // read from the file
  uint64_t evaluated = 0;
  uint64_t skipped_single_class = 0;
  uint64_t skipped_unknown_user = 0;
  uint64_t unknown_items = 0;  // candidates the server did not know
};

// Ranks one request; thread-safe (called from `concurrency` threads).
using RankFunction =
    std::function<absl::StatusOr<v1::RankResponse>(const v1::RankRequest&)>;

// Evaluates `impressions` (labels required) with `rank`.
absl::StatusOr<EvalResult> EvaluateImpressions(
    const std::vector<Impression>& impressions, const RankFunction& rank,
    const EvalOptions& options);

// Retrieval quality (embsum-eval --retrieval): for each distinct user of
// the impressions, Retrieve(k, exact = true) is the truth and the default
// Retrieve(k) is compared with it: recall@k for each k of `ks` (the share of
// the exact top k found in the default answer's top k). Calls run one at a
// time, so the latencies are those of an idle server.
struct RetrievalOptions {
  std::vector<uint32_t> ks = {10, 100};  // ascending; the largest is asked
  uint64_t users = 100;                  // distinct users to evaluate
};

struct LatencySummary {
  double mean_seconds = 0, p50_seconds = 0, p90_seconds = 0, p99_seconds = 0,
         max_seconds = 0;
};

struct RetrievalResult {
  std::vector<uint32_t> ks;
  std::vector<double> mean_recall;  // per k
  std::vector<double> min_recall;   // per k
  // Nearest-rank 1st and 5th percentile users, per k.
  std::vector<double> p1_recall;
  std::vector<double> p5_recall;
  uint64_t users = 0;  // evaluated
  uint64_t skipped_unknown_user = 0;
  LatencySummary approximate, exact;
  double mean_scored_items_approximate = 0;
  double mean_scored_items_exact = 0;
  uint64_t certified_approximate = 0;  // default answers certified exact
  uint64_t catalogue_items = 0;        // from GetModelInfo (0 if unknown)
};

using RetrieveFunction = std::function<absl::StatusOr<v1::RetrieveResponse>(
    const v1::RetrieveRequest&)>;
// Seconds since an arbitrary origin (injected for tests).
using Clock = std::function<double()>;

absl::StatusOr<RetrievalResult> EvaluateRetrieval(
    const std::vector<std::string>& user_ids, const RetrieveFunction& retrieve,
    const RetrievalOptions& options, const Clock& clock);

// Connects to options.target and evaluates retrieval for the users of
// options.behaviors (labels not needed).
absl::StatusOr<RetrievalResult> RunRetrievalEval(
    const EvalOptions& options, const RetrievalOptions& retrieval);

std::string RetrievalText(const RetrievalResult& result);

// Reads options.behaviors, connects to options.target and evaluates.
absl::StatusOr<EvalResult> RunEval(const EvalOptions& options);

// "AUC: 0.9123\nMRR: ...\nnDCG@5: ...\nnDCG@10: ...\n" plus the counts.
std::string EvalText(const EvalResult& result);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_EVAL_H_
