#include "loadgen/eval.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "embsum/v1/ranking.grpc.pb.h"
#include "loadgen/grpc_status.h"
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

// A Ranker stub on options.target (TLS as options.tls), once the channel
// is connected; Unavailable after options.connect_timeout.
absl::StatusOr<std::unique_ptr<v1::Ranker::Stub>> ConnectRanker(
    const EvalOptions& options) {
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
  return v1::Ranker::NewStub(channel);
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

  ASSIGN_OR_RETURN(std::unique_ptr<v1::Ranker::Stub> stub,
                   ConnectRanker(options));
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
      return FromGrpcStatus(status);
    }
    return response;
  };
  return EvaluateImpressions(impressions, rank, options);
}

namespace {

LatencySummary Summarise(std::vector<double> seconds) {
  LatencySummary s;
  if (seconds.empty()) return s;
  std::sort(seconds.begin(), seconds.end());
  double sum = 0;
  for (double x : seconds) sum += x;
  s.mean_seconds = sum / static_cast<double>(seconds.size());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(q * static_cast<double>(seconds.size() - 1));
    return seconds[i];
  };
  s.p50_seconds = at(0.5);
  s.p90_seconds = at(0.9);
  s.p99_seconds = at(0.99);
  s.max_seconds = seconds.back();
  return s;
}

}  // namespace

absl::StatusOr<RetrievalResult> EvaluateRetrieval(
    const std::vector<std::string>& user_ids, const RetrieveFunction& retrieve,
    const RetrievalOptions& options, const Clock& clock) {
  if (options.ks.empty() || options.ks.front() == 0 ||
      !std::is_sorted(options.ks.begin(), options.ks.end())) {
    return absl::InvalidArgumentError(
        "--retrieval_k must be ascending positive integers");
  }
  const uint32_t k = options.ks.back();
  RetrievalResult result;
  result.ks = options.ks;
  result.mean_recall.assign(options.ks.size(), 0.0);
  result.min_recall.assign(options.ks.size(), 1.0);
  std::vector<double> approx_seconds, exact_seconds;
  std::vector<std::vector<double>> per_user(options.ks.size());
  double approx_scored = 0, exact_scored = 0;
  for (const std::string& user : user_ids) {
    if (result.users >= options.users) break;
    v1::RetrieveRequest request;
    request.set_user_id(user);
    request.set_k(k);
    request.set_exact(true);
    double start = clock();
    absl::StatusOr<v1::RetrieveResponse> exact = retrieve(request);
    const double exact_time = clock() - start;
    if (!exact.ok()) {
      if (exact.status().code() == absl::StatusCode::kNotFound) {
        ++result.skipped_unknown_user;
        continue;
      }
      return absl::Status(exact.status().code(),
                          absl::StrCat("Retrieve(user '", user, "', k ", k,
                                       ", exact): ", exact.status().message()));
    }
    request.set_exact(false);
    start = clock();
    absl::StatusOr<v1::RetrieveResponse> approx = retrieve(request);
    const double approx_time = clock() - start;
    if (!approx.ok()) {
      return absl::Status(approx.status().code(),
                          absl::StrCat("Retrieve(user '", user, "', k ", k,
                                       "): ", approx.status().message()));
    }
    for (size_t i = 0; i < options.ks.size(); ++i) {
      const size_t want = std::min<size_t>(options.ks[i], exact->items_size());
      double recall = 1.0;
      if (want > 0) {
        std::set<std::string_view> truth;
        for (size_t j = 0; j < want; ++j)
          truth.insert(exact->items(j).item_id());
        size_t hit = 0;
        const size_t got =
            std::min<size_t>(options.ks[i], approx->items_size());
        for (size_t j = 0; j < got; ++j) {
          hit += truth.count(approx->items(j).item_id());
        }
        recall = static_cast<double>(hit) / static_cast<double>(want);
      }
      result.mean_recall[i] += recall;
      per_user[i].push_back(recall);
      result.min_recall[i] = std::min(result.min_recall[i], recall);
    }
    exact_seconds.push_back(exact_time);
    approx_seconds.push_back(approx_time);
    exact_scored += static_cast<double>(exact->scored_items());
    approx_scored += static_cast<double>(approx->scored_items());
    result.certified_approximate += approx->certified_exact();
    ++result.users;
  }
  if (result.users == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no user could be evaluated (", user_ids.size(),
                     " tried, ", result.skipped_unknown_user, " unknown)"));
  }
  const double n = static_cast<double>(result.users);
  for (double& r : result.mean_recall) r /= n;
  for (std::vector<double>& recalls : per_user) {
    std::sort(recalls.begin(), recalls.end());
    auto nearest_rank = [&](double q) {
      const size_t rank = static_cast<size_t>(
          std::ceil(q * static_cast<double>(recalls.size())));
      return recalls[std::clamp<size_t>(rank, 1, recalls.size()) - 1];
    };
    result.p1_recall.push_back(nearest_rank(0.01));
    result.p5_recall.push_back(nearest_rank(0.05));
  }
  result.mean_scored_items_exact = exact_scored / n;
  result.mean_scored_items_approximate = approx_scored / n;
  result.exact = Summarise(exact_seconds);
  result.approximate = Summarise(approx_seconds);
  return result;
}

absl::StatusOr<RetrievalResult> RunRetrievalEval(
    const EvalOptions& options, const RetrievalOptions& retrieval) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("--target=HOST:PORT is required");
  }
  if (options.behaviors.empty()) {
    return absl::InvalidArgumentError(
        "--behaviors=FILE is required (its users are evaluated)");
  }
  ReadBehaviorsOptions read;
  read.require_labels = false;
  read.limit = options.limit;
  ASSIGN_OR_RETURN(std::vector<Impression> impressions,
                   ReadBehaviors(options.behaviors, read));
  std::vector<std::string> users;
  std::set<std::string> seen;
  for (const Impression& imp : impressions) {
    if (seen.insert(imp.user_id).second) users.push_back(imp.user_id);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<v1::Ranker::Stub> stub,
                   ConnectRanker(options));
  RetrieveFunction retrieve = [&](const v1::RetrieveRequest& request)
      -> absl::StatusOr<v1::RetrieveResponse> {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(options.deadline));
    if (const std::string header = UserIdHeader(request.user_id());
        !header.empty()) {
      context.AddMetadata("x-user-id", header);
    }
    v1::RetrieveResponse response;
    grpc::Status status = stub->Retrieve(&context, request, &response);
    if (!status.ok()) {
      return FromGrpcStatus(status);
    }
    return response;
  };
  const auto origin = std::chrono::steady_clock::now();
  Clock clock = [origin] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         origin)
        .count();
  };
  ASSIGN_OR_RETURN(RetrievalResult result,
                   EvaluateRetrieval(users, retrieve, retrieval, clock));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(options.deadline));
  v1::ModelInfo info;
  if (stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok()) {
    result.catalogue_items = info.items();
  }
  return result;
}

std::string RetrievalText(const RetrievalResult& r) {
  std::string out;
  for (size_t i = 0; i < r.ks.size(); ++i) {
    absl::StrAppendFormat(
        &out, "recall@%d: %.4f (p1 %.2f, p5 %.2f, min %.2f)\n", r.ks[i],
        r.mean_recall[i], i < r.p1_recall.size() ? r.p1_recall[i] : 0.0,
        i < r.p5_recall.size() ? r.p5_recall[i] : 0.0, r.min_recall[i]);
  }
  auto latency = [&](const char* name, const LatencySummary& l, double scored) {
    absl::StrAppendFormat(&out,
                          "%s: mean %.2f ms, p50 %.2f ms, p90 %.2f ms, p99 "
                          "%.2f ms, max %.2f ms; %.0f items scored\n",
                          name, l.mean_seconds * 1e3, l.p50_seconds * 1e3,
                          l.p90_seconds * 1e3, l.p99_seconds * 1e3,
                          l.max_seconds * 1e3, scored);
  };
  latency("default", r.approximate, r.mean_scored_items_approximate);
  latency("exact", r.exact, r.mean_scored_items_exact);
  absl::StrAppendFormat(
      &out,
      "latency ratio default/exact: mean %.3f, p99 %.3f\nusers: %d evaluated, "
      "%d unknown; "
      "%d default answers certified exact; catalogue %d items\n",
      r.exact.mean_seconds > 0
          ? r.approximate.mean_seconds / r.exact.mean_seconds
          : 0.0,
      r.exact.p99_seconds > 0 ? r.approximate.p99_seconds / r.exact.p99_seconds
                              : 0.0,
      r.users, r.skipped_unknown_user, r.certified_approximate,
      r.catalogue_items);
  return out;
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
