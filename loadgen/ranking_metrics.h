// Ranking-quality metrics of one impression with MIND's standard definitions
// (the MIND competition's evaluate.py), averaged over impressions by
// embsum-eval:
//   AUC     area under the ROC curve (ties in score count one half);
//   MRR     sum over clicked items of 1/rank, divided by the clicks;
//   nDCG@k  DCG of the top k with gain 2^label - 1 and discount
//           log2(rank + 1), divided by the DCG of the ideal order.
// Ranks follow score descending, ties in the impression's order (the order
// Rank returns). Thread-safety: stateless functions; the accumulator is a
// value type, not thread-safe.
#ifndef EMBSUM_LOADGEN_RANKING_METRICS_H_
#define EMBSUM_LOADGEN_RANKING_METRICS_H_

#include <cstdint>
#include <optional>
#include <span>

namespace embsum::loadgen {

struct RankingMetrics {
  double auc = 0;
  double mrr = 0;
  double ndcg5 = 0;
  double ndcg10 = 0;
};

double Auc(std::span<const double> scores, std::span<const int> labels);
double Mrr(std::span<const double> scores, std::span<const int> labels);
double Ndcg(std::span<const double> scores, std::span<const int> labels, int k);

// All four for one impression; nullopt when the labels are all 0 or all 1
// (AUC is undefined there, and MIND's scorer rejects such impressions).
// scores and labels have the same size; labels are 0 or 1.
std::optional<RankingMetrics> ImpressionMetrics(std::span<const double> scores,
                                                std::span<const int> labels);

// Running mean of per-impression metrics.
class MetricsMean {
 public:
  void Add(const RankingMetrics& m);
  void Merge(const MetricsMean& other);
  uint64_t count() const { return count_; }
  RankingMetrics Mean() const;

 private:
  RankingMetrics sum_;
  uint64_t count_ = 0;
};

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_RANKING_METRICS_H_
