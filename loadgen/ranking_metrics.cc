#include "loadgen/ranking_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace embsum::loadgen {
namespace {

// Indices by score descending, ties in input order.
std::vector<size_t> RankOrder(std::span<const double> scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

double Dcg(std::span<const size_t> order, std::span<const int> labels, int k) {
  double dcg = 0;
  const size_t n = std::min<size_t>(order.size(), static_cast<size_t>(k));
  for (size_t i = 0; i < n; ++i) {
    const double gain = std::exp2(labels[order[i]]) - 1.0;
    dcg += gain / std::log2(static_cast<double>(i) + 2.0);
  }
  return dcg;
}

}  // namespace

double Auc(std::span<const double> scores, std::span<const int> labels) {
  // Mann-Whitney U with average ranks for ties.
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double positive_rank_sum = 0;
  uint64_t positives = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double average_rank = 0.5 * (static_cast<double>(i + 1 + j));
    for (size_t t = i; t < j; ++t) {
      if (labels[order[t]] > 0) {
        positive_rank_sum += average_rank;
        ++positives;
      }
    }
    i = j;
  }
  const uint64_t negatives = scores.size() - positives;
  if (positives == 0 || negatives == 0) return 0.5;
  const double p = static_cast<double>(positives);
  return (positive_rank_sum - p * (p + 1) / 2) /
         (p * static_cast<double>(negatives));
}

double Mrr(std::span<const double> scores, std::span<const int> labels) {
  const std::vector<size_t> order = RankOrder(scores);
  double rr = 0;
  double clicks = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    rr += labels[order[i]] / static_cast<double>(i + 1);
    clicks += labels[order[i]];
  }
  return clicks > 0 ? rr / clicks : 0.0;
}

double Ndcg(std::span<const double> scores, std::span<const int> labels,
            int k) {
  const std::vector<size_t> order = RankOrder(scores);
  std::vector<size_t> ideal(labels.size());
  std::iota(ideal.begin(), ideal.end(), 0);
  std::stable_sort(ideal.begin(), ideal.end(),
                   [&](size_t a, size_t b) { return labels[a] > labels[b]; });
  const double best = Dcg(ideal, labels, k);
  return best > 0 ? Dcg(order, labels, k) / best : 0.0;
}

std::optional<RankingMetrics> ImpressionMetrics(std::span<const double> scores,
                                                std::span<const int> labels) {
  const auto clicks =
      std::count_if(labels.begin(), labels.end(), [](int l) { return l > 0; });
  if (clicks == 0 || clicks == static_cast<long>(labels.size())) {
    return std::nullopt;
  }
  RankingMetrics m;
  m.auc = Auc(scores, labels);
  m.mrr = Mrr(scores, labels);
  m.ndcg5 = Ndcg(scores, labels, 5);
  m.ndcg10 = Ndcg(scores, labels, 10);
  return m;
}

void MetricsMean::Add(const RankingMetrics& m) {
  sum_.auc += m.auc;
  sum_.mrr += m.mrr;
  sum_.ndcg5 += m.ndcg5;
  sum_.ndcg10 += m.ndcg10;
  ++count_;
}

void MetricsMean::Merge(const MetricsMean& other) {
  sum_.auc += other.sum_.auc;
  sum_.mrr += other.sum_.mrr;
  sum_.ndcg5 += other.sum_.ndcg5;
  sum_.ndcg10 += other.sum_.ndcg10;
  count_ += other.count_;
}

RankingMetrics MetricsMean::Mean() const {
  if (count_ == 0) return {};
  const double n = static_cast<double>(count_);
  return {sum_.auc / n, sum_.mrr / n, sum_.ndcg5 / n, sum_.ndcg10 / n};
}

}  // namespace embsum::loadgen
