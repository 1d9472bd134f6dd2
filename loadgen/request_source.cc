#include "loadgen/request_source.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "embsum/v1/echo.pb.h"
#include "embsum/v1/ranking.pb.h"

namespace embsum::loadgen {
namespace {

constexpr uint32_t kMaxCandidates = 100000;

absl::StatusOr<uint32_t> ParseCount(absl::string_view text,
                                    absl::string_view spec) {
  uint32_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v == 0 || v > kMaxCandidates) {
    return absl::InvalidArgumentError(
        absl::StrCat("--candidates='", spec, "': '", text,
                     "' is not an integer in [1, ", kMaxCandidates, "]"));
  }
  return v;
}

// Draws k distinct indices from [0, n) (Floyd's algorithm), in random order.
std::vector<uint32_t> SampleDistinct(uint32_t n, uint32_t k,
                                     std::mt19937_64& rng) {
  std::vector<uint32_t> out;
  out.reserve(k);
  std::unordered_set<uint32_t> chosen;
  chosen.reserve(k * 2);
  for (uint32_t j = n - k; j < n; ++j) {
    const uint32_t t = std::uniform_int_distribution<uint32_t>(0, j)(rng);
    if (chosen.insert(t).second) {
      out.push_back(t);
    } else {
      chosen.insert(j);
      out.push_back(j);
    }
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

// The size of the RankResponse that returns every candidate of `request`
// with a score (and a top_user_code when explaining).
size_t RankResponseBytes(const v1::RankRequest& request) {
  v1::RankResponse response;
  for (const std::string& id : request.candidate_ids()) {
    v1::ScoredItem* item = response.add_items();
    item->set_item_id(id);
    item->set_score(0.5f);
    if (request.explain()) item->set_top_user_code(1);
  }
  response.set_model_version(std::string(16, 'v'));
  return response.ByteSizeLong();
}

}  // namespace

std::string UserIdHeader(const std::string& user_id) {
  for (const char c : user_id) {
    if (c < 0x20 || c > 0x7e) return "";
  }
  return user_id;
}

namespace {

// Appends `request` to the pool, wrapped in an EchoRequest for kEcho.
void AddToPool(const v1::RankRequest& request,
               const RequestPoolOptions& options, RequestPool& pool,
               double& response_bytes_sum) {
  const std::string rank_bytes = request.SerializeAsString();
  pool.mean_request_bytes += rank_bytes.size();
  pool.mean_candidates += request.candidate_ids_size();
  pool.user_ids.push_back(UserIdHeader(request.user_id()));
  if (options.kind == TargetKind::kRank) {
    pool.payloads.push_back(rank_bytes);
    return;
  }
  v1::EchoRequest echo;
  echo.set_payload(rank_bytes);
  const uint32_t response_bytes =
      options.echo_response_bytes != 0
          ? options.echo_response_bytes
          : static_cast<uint32_t>(RankResponseBytes(request));
  echo.set_response_bytes(response_bytes);
  response_bytes_sum += response_bytes;
  pool.payloads.push_back(echo.SerializeAsString());
}

void FinishPool(const RequestPoolOptions& options, double response_bytes_sum,
                RequestPool& pool) {
  const double n = static_cast<double>(pool.payloads.size());
  pool.mean_request_bytes /= n;
  pool.mean_candidates /= n;
  if (options.kind == TargetKind::kEcho) {
    pool.echo_response_bytes =
        static_cast<uint32_t>(std::llround(response_bytes_sum / n));
  }
}

RequestPool EmptyPool(const RequestPoolOptions& options) {
  RequestPool pool;
  pool.method = options.kind == TargetKind::kRank ? "/embsum.v1.Ranker/Rank"
                                                  : "/embsum.v1.Echo/Echo";
  return pool;
}

v1::RankRequest BaseRequest(const RequestPoolOptions& options) {
  v1::RankRequest request;
  request.set_top_k(options.top_k);
  request.set_explain(options.explain);
  request.set_include_summary(options.include_summary);
  return request;
}

}  // namespace

absl::StatusOr<CandidateCount> CandidateCount::Parse(absl::string_view spec) {
  CandidateCount c;
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  if (parts.size() == 1) {
    ASSIGN_OR_RETURN(c.a_, ParseCount(parts[0], spec));
    c.kind_ = Kind::kFixed;
    return c;
  }
  if (parts.size() == 3 && parts[0] == "uniform") {
    ASSIGN_OR_RETURN(c.a_, ParseCount(parts[1], spec));
    ASSIGN_OR_RETURN(c.b_, ParseCount(parts[2], spec));
    if (c.a_ > c.b_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--candidates='", spec, "': the low bound exceeds the high bound"));
    }
    c.kind_ = Kind::kUniform;
    return c;
  }
  if (parts.size() == 3 && parts[0] == "lognormal") {
    ASSIGN_OR_RETURN(c.a_, ParseCount(parts[1], spec));
    if (!absl::SimpleAtod(parts[2], &c.sigma_) || !(c.sigma_ >= 0) ||
        c.sigma_ > 5) {
      return absl::InvalidArgumentError(
          absl::StrCat("--candidates='", spec, "': sigma '", parts[2],
                       "' is not a number in [0, 5]"));
    }
    c.kind_ = Kind::kLogNormal;
    return c;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--candidates='", spec,
      "': expected N, uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA"));
}

uint32_t CandidateCount::Draw(std::mt19937_64& rng) const {
  switch (kind_) {
    case Kind::kFixed:
      return a_;
    case Kind::kUniform:
      return std::uniform_int_distribution<uint32_t>(a_, b_)(rng);
    case Kind::kLogNormal: {
      const double v =
          std::lognormal_distribution<double>(std::log(a_), sigma_)(rng);
      return static_cast<uint32_t>(
          std::clamp<double>(std::llround(v), 1.0, kMaxCandidates));
    }
  }
  return a_;
}

std::string CandidateCount::ToString() const {
  switch (kind_) {
    case Kind::kFixed:
      return absl::StrCat(a_);
    case Kind::kUniform:
      return absl::StrCat("uniform:", a_, ":", b_);
    case Kind::kLogNormal:
      return absl::StrCat("lognormal:", a_, ":", sigma_);
  }
  return "";
}

absl::StatusOr<RequestPool> BuildPoolFromIds(
    const std::vector<std::string>& user_ids,
    const std::vector<std::string>& item_ids, const CandidateCount& count,
    const RequestPoolOptions& options) {
  if (user_ids.empty() || item_ids.empty()) {
    return absl::InvalidArgumentError(
        "no user ids or no item ids to draw from");
  }
  if (options.pool_size == 0) {
    return absl::InvalidArgumentError("request pool size must be positive");
  }
  std::mt19937_64 rng(options.seed);
  RequestPool pool = EmptyPool(options);
  pool.payloads.reserve(options.pool_size);
  double response_bytes_sum = 0;
  const uint32_t n_items = static_cast<uint32_t>(item_ids.size());
  for (uint32_t i = 0; i < options.pool_size; ++i) {
    v1::RankRequest request = BaseRequest(options);
    request.set_user_id(user_ids[std::uniform_int_distribution<size_t>(
        0, user_ids.size() - 1)(rng)]);
    const uint32_t k = std::min(count.Draw(rng), n_items);
    for (uint32_t row : SampleDistinct(n_items, k, rng)) {
      request.add_candidate_ids(item_ids[row]);
    }
    AddToPool(request, options, pool, response_bytes_sum);
  }
  FinishPool(options, response_bytes_sum, pool);
  return pool;
}

absl::StatusOr<RequestPool> BuildPoolFromModelDir(
    const std::string& model_dir, const CandidateCount& count,
    const RequestPoolOptions& options) {
  ASSIGN_OR_RETURN(std::vector<std::string> users,
                   ReadIdFile(model_dir + "/users/ids.txt"));
  ASSIGN_OR_RETURN(std::vector<std::string> items,
                   ReadIdFile(model_dir + "/items/ids.txt"));
  return BuildPoolFromIds(users, items, count, options);
}

absl::StatusOr<RequestPool> BuildPoolFromImpressions(
    const std::vector<Impression>& impressions,
    const RequestPoolOptions& options) {
  if (impressions.empty()) {
    return absl::InvalidArgumentError("no impressions to draw from");
  }
  RequestPool pool = EmptyPool(options);
  double response_bytes_sum = 0;
  const size_t n =
      options.pool_size == 0
          ? impressions.size()
          : std::min<size_t>(options.pool_size, impressions.size());
  for (size_t i = 0; i < n; ++i) {
    v1::RankRequest request = BaseRequest(options);
    request.set_user_id(impressions[i].user_id);
    for (const std::string& id : impressions[i].candidates) {
      request.add_candidate_ids(id);
    }
    AddToPool(request, options, pool, response_bytes_sum);
  }
  FinishPool(options, response_bytes_sum, pool);
  return pool;
}

}  // namespace embsum::loadgen
