#include "loadgen/eval.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "embsum/v1/ranking.grpc.pb.h"
#include "loadgen/request_source.h"

namespace embsum::loadgen {
namespace {

// Scores of an impression's candidates from a RankResponse; unknown or
// missing candidates get -inf (rank last, in impression order).
std::vector<double> CandidateScores(const Impression& imp,
                                    const v1::RankResponse& response) {
  std::unordered_map<std::string_view, double> by_id;
  by_id.reserve(response.items_size());
  for (const v1::ScoredItem& item : response.items()) {
    const double s = item.score();
    by_id.emplace(item.item_id(),
                  std::isnan(s) ? -std::numeric_limits<double>::infinity() : s);
  }
  std::vector<double> scores;
  scores.reserve(imp.candidates.size());
  for (const std::string& id : imp.candidates) {
    auto it = by_id.find(id);
    scores.push_back(it == by_id.end()
                         ? -std::numeric_limits<double>::infinity()
                         : it->second);
  }
  return scores;
}

}  // namespace

absl::StatusOr<EvalResult> EvaluateImpressions(
    const std::vector<Impression>& impressions, const RankFunction& rank,
    const EvalOptions& options) {
  if (options.concurrency < 1) {
    return absl::InvalidArgumentError("--concurrency must be at least 1");
  }
  for (const Impression& imp : impressions) {
    if (imp.labels.size() != imp.candidates.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", imp.line, ": impression has no -0/-1 click labels"));
    }
  }
  absl::Mutex mu;
  EvalResult result;
  result.impressions = impressions.size();
  MetricsMean mean;
  absl::Status first_error;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};

  auto worker = [&] {
    MetricsMean local;
    EvalResult counts;
    for (size_t i = next++; i < impressions.size() && !failed; i = next++) {
      const Impression& imp = impressions[i];
      v1::RankRequest request;
      request.set_user_id(imp.user_id);
      for (const std::string& id : imp.candidates) {
        request.add_candidate_ids(id);
      }
      absl::StatusOr<v1::RankResponse> response = rank(request);
      if (!response.ok()) {
        if (response.status().code() == absl::StatusCode::kNotFound) {
          ++counts.skipped_unknown_user;
          continue;
        }
        absl::MutexLock lock(&mu);
        if (first_error.ok()) {
          first_error = absl::Status(
              response.status().code(),
              absl::StrCat(options.behaviors, ":", imp.line,
                           ": Rank failed: ", response.status().message()));
        }
        failed = true;
        return;
      }
      counts.unknown_items += response->unknown_item_ids_size();
      std::vector<int> labels = imp.labels;
      if (options.shuffle_labels) {
        std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + i);
        std::shuffle(labels.begin(), labels.end(), rng);
      }
      const std::vector<double> scores = CandidateScores(imp, *response);
      if (auto m = ImpressionMetrics(scores, labels)) {
        local.Add(*m);
      } else {
        ++counts.skipped_single_class;
      }
    }
    absl::MutexLock lock(&mu);
    mean.Merge(local);
    result.skipped_unknown_user += counts.skipped_unknown_user;
    result.skipped_single_class += counts.skipped_single_class;
    result.unknown_items += counts.unknown_items;
  };
  std::vector<std::thread> threads;
  const int n = std::min<int>(options.concurrency,
                              std::max<size_t>(impressions.size(), 1));
  for (int t = 0; t < n; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (!first_error.ok()) return first_error;
  result.evaluated = mean.count();
  result.mean = mean.Mean();
  if (result.evaluated == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.behaviors, ": no impression could be evaluated (",
        result.skipped_unknown_user, " of unknown users, ",
        result.skipped_single_class, " with only clicks or only non-clicks)"));
  }
  return result;
}

absl::StatusOr<EvalResult> RunEval(const EvalOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("--target=HOST:PORT is required");
  }
  if (options.behaviors.empty()) {
    return absl::InvalidArgumentError("--behaviors=FILE is required");
  }
  const absl::Duration kMax = absl::Hours(24 * 30);
  for (absl::Duration d : {options.deadline, options.connect_timeout}) {
    if (d <= absl::ZeroDuration() || d > kMax) {
      return absl::InvalidArgumentError(
          "--deadline and --connect_timeout must be positive seconds, at most "
          "30 days");
    }
  }
  ReadBehaviorsOptions read;
  read.require_labels = true;
  read.limit = options.limit;
  ASSIGN_OR_RETURN(std::vector<Impression> impressions,
                   ReadBehaviors(options.behaviors, read));

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                   MakeChannelCredentials(options.tls));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  ApplyTlsChannelArgs(options.tls, args);
  auto channel = grpc::CreateCustomChannel(options.target, credentials, args);
  if (!channel->WaitForConnected(
          std::chrono::system_clock::now() +
          absl::ToChronoMilliseconds(options.connect_timeout))) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", options.target, " within ",
                     absl::FormatDuration(options.connect_timeout)));
  }
  auto stub = v1::Ranker::NewStub(channel);
  RankFunction rank =
      [&](const v1::RankRequest& request) -> absl::StatusOr<v1::RankResponse> {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(options.deadline));
    // Envoy's consistent-hash key (deploy/envoy).
    if (const std::string header = UserIdHeader(request.user_id());
        !header.empty()) {
      context.AddMetadata("x-user-id", header);
    }
    v1::RankResponse response;
    grpc::Status status = stub->Rank(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response;
  };
  return EvaluateImpressions(impressions, rank, options);
}

std::string EvalText(const EvalResult& r) {
  return absl::StrFormat(
      "AUC: %.4f\nMRR: %.4f\nnDCG@5: %.4f\nnDCG@10: %.4f\n"
      "impressions: %d read, %d evaluated, %d skipped (single class), %d "
      "skipped (unknown user); %d unknown candidates\n",
      r.mean.auc, r.mean.mrr, r.mean.ndcg5, r.mean.ndcg10, r.impressions,
      r.evaluated, r.skipped_single_class, r.skipped_unknown_user,
      r.unknown_items);
}

}  // namespace embsum::loadgen
