// embsum-eval: AUC, MRR, nDCG@5 and nDCG@10 of a running server over
// MIND-format impressions (docs/design.md section 6); with --retrieval,
// recall@k of the default Retrieve against exact=true, and both latencies.
//   embsum-eval --target=HOST:PORT --behaviors=FILE [--retrieval]
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "common/tool_flags.h"
#include "loadgen/eval.h"
#include "loadgen/report.h"
#include "nlohmann/json.hpp"
#include "tools/client_flags/tls_client_flags.h"

ABSL_FLAG(std::string, target, "", "HOST:PORT of embsum-server");
ABSL_FLAG(std::string, behaviors, "", "MIND-format behaviors.tsv");
ABSL_FLAG(uint64_t, limit, 0, "impressions to evaluate (0 = all)");
ABSL_FLAG(int32_t, concurrency, 4, "Rank calls in flight");
ABSL_FLAG(bool, shuffle_labels, false,
          "shuffle the labels within each impression (a control: AUC ~ 0.5)");
ABSL_FLAG(uint64_t, seed, 1, "seed for --shuffle_labels");
ABSL_FLAG(double, deadline, 10, "per-call deadline, seconds");
ABSL_FLAG(double, connect_timeout, 10,
          "seconds to wait for the server to accept connections");
ABSL_FLAG(std::string, json, "", "also write the metrics as JSON here");
ABSL_FLAG(bool, retrieval, false,
          "evaluate Retrieve instead of Rank: for the users of --behaviors, "
          "recall@k of the default path against exact=true, and latency");
ABSL_FLAG(std::vector<std::string>, retrieval_k,
          std::vector<std::string>({"10", "100"}),
          "with --retrieval: the k values (ascending; the largest is asked)");
ABSL_FLAG(uint64_t, retrieval_users, 100,
          "with --retrieval: distinct users evaluated");

namespace {

int RunRetrieval(const embsum::loadgen::EvalOptions& o) {
  embsum::loadgen::RetrievalOptions r;
  r.ks.clear();
  for (const std::string& k : absl::GetFlag(FLAGS_retrieval_k)) {
    uint32_t value = 0;
    if (!absl::SimpleAtoi(k, &value) || value == 0) {
      std::cerr << "embsum-eval: --retrieval_k: '" << k
                << "' is not a positive integer\n";
      return 2;
    }
    r.ks.push_back(value);
  }
  r.users = absl::GetFlag(FLAGS_retrieval_users);
  auto result = embsum::loadgen::RunRetrievalEval(o, r);
  if (!result.ok()) {
    std::cerr << "embsum-eval: " << result.status().message() << "\n";
    return result.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::cout << embsum::loadgen::RetrievalText(*result);
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    nlohmann::json recall = nlohmann::json::object();
    nlohmann::json min_recall = nlohmann::json::object();
    nlohmann::json p1_recall = nlohmann::json::object();
    nlohmann::json p5_recall = nlohmann::json::object();
    for (size_t i = 0; i < result->ks.size(); ++i) {
      recall[std::to_string(result->ks[i])] = result->mean_recall[i];
      min_recall[std::to_string(result->ks[i])] = result->min_recall[i];
      p1_recall[std::to_string(result->ks[i])] = result->p1_recall[i];
      p5_recall[std::to_string(result->ks[i])] = result->p5_recall[i];
    }
    auto latency = [](const embsum::loadgen::LatencySummary& l) {
      return nlohmann::json{{"mean", l.mean_seconds},
                            {"p50", l.p50_seconds},
                            {"p90", l.p90_seconds},
                            {"p99", l.p99_seconds},
                            {"max", l.max_seconds}};
    };
    nlohmann::json j = {
        {"recall", recall},
        {"min_recall", min_recall},
        {"p1_recall", p1_recall},
        {"p5_recall", p5_recall},
        {"users", result->users},
        {"skipped_unknown_user", result->skipped_unknown_user},
        {"default_latency_seconds", latency(result->approximate)},
        {"exact_latency_seconds", latency(result->exact)},
        {"default_scored_items", result->mean_scored_items_approximate},
        {"exact_scored_items", result->mean_scored_items_exact},
        {"default_certified_exact", result->certified_approximate},
        {"catalogue_items", result->catalogue_items},
    };
    if (auto s = embsum::loadgen::WriteFile(json_path, j.dump(2) + "\n");
        !s.ok()) {
      std::cerr << "embsum-eval: " << s.message() << "\n";
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  embsum::ShowOwnFlagsInHelp();
  absl::SetProgramUsageMessage(
      "embsum-eval --target=HOST:PORT --behaviors=FILE");
  absl::ParseCommandLine(argc, argv);
  embsum::loadgen::EvalOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.behaviors = absl::GetFlag(FLAGS_behaviors);
  o.limit = absl::GetFlag(FLAGS_limit);
  o.concurrency = absl::GetFlag(FLAGS_concurrency);
  o.shuffle_labels = absl::GetFlag(FLAGS_shuffle_labels);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline) * 1e3);
  o.connect_timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_connect_timeout) * 1e3);
  o.tls = embsum::tools::TlsClientOptionsFromFlags();
  if (absl::GetFlag(FLAGS_retrieval)) return RunRetrieval(o);
  auto result = embsum::loadgen::RunEval(o);
  if (!result.ok()) {
    std::cerr << "embsum-eval: " << result.status().message() << "\n";
    return result.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::cout << embsum::loadgen::EvalText(*result);
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    nlohmann::json j = {
        {"auc", result->mean.auc},
        {"mrr", result->mean.mrr},
        {"ndcg5", result->mean.ndcg5},
        {"ndcg10", result->mean.ndcg10},
        {"impressions", result->impressions},
        {"evaluated", result->evaluated},
        {"skipped_single_class", result->skipped_single_class},
        {"skipped_unknown_user", result->skipped_unknown_user},
        {"unknown_items", result->unknown_items},
    };
    if (auto s = embsum::loadgen::WriteFile(json_path, j.dump(2) + "\n");
        !s.ok()) {
      std::cerr << "embsum-eval: " << s.message() << "\n";
      return 1;
    }
  }
  return 0;
}
