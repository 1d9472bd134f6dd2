// The phases of one Rank inside the server (RankerCore::Rank), in seconds.
// A plain value type.
#ifndef EMBSUM_SERVER_RANK_TIMINGS_H_
#define EMBSUM_SERVER_RANK_TIMINGS_H_

namespace embsum::server {

// Where one Rank's time went inside RankerCore::Rank (steady clock). A
// phase that did not run stays 0. Observed per request in
// embsum_rank_phase_seconds{phase} (docs/server.md "Where the time goes").
struct RankTimings {
  double user = 0;      // user record Get from RocksDB and decode
  double lookup = 0;    // FindRow and de-duplication of the candidate ids
  double score = 0;     // Scorer::Score (panels, kernel, the scorer's threads)
  double top_k = 0;     // SelectTopK
  double response = 0;  // response items, summary, model version
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_RANK_TIMINGS_H_
