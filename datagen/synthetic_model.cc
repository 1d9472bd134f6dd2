#include "datagen/synthetic_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numbers>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "store/internal/file_util.h"
#include "store/internal/ids.h"
#include "store/internal/npy.h"
#include "store/manifest.h"

namespace embsum::datagen {
namespace {

using store::IsValidUtf8;
using store::ManifestToJson;
using store::ModelManifest;
using store::NpyDType;
using store::NpyWriter;
using store::internal::WriteFileDurably;

namespace fs = std::filesystem;

// SplitMix64: tiny, fast and identical on every platform (the standard
// library's distributions are not), so a seed always gives the same files.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream)
      : state_(Mix(seed ^ Mix(stream + 0x9e3779b97f4a7c15ull))) {}

  uint64_t Next() { return Mix(state_ += 0x9e3779b97f4a7c15ull); }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n).
  uint64_t Below(uint64_t n) { return static_cast<uint64_t>(Uniform() * n); }
  // Standard normal (Box-Muller).
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u = 0;
    while (u <= 0) u = Uniform();
    double v = Uniform();
    double r = std::sqrt(-2.0 * std::log(u));
    spare_ = r * std::sin(2 * std::numbers::pi * v);
    has_spare_ = true;
    return r * std::cos(2 * std::numbers::pi * v);
  }

 private:
  static uint64_t Mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// Stream numbers keep each entity's randomness independent of the others.
constexpr uint64_t kCentroidStream = 1ull << 56;
constexpr uint64_t kProjectionStream = 2ull << 56;
constexpr uint64_t kItemStream = 3ull << 56;
constexpr uint64_t kUserStream = 4ull << 56;
constexpr uint64_t kImpressionStream = 5ull << 56;

// Noise norms relative to the unit-length topic centroids.
constexpr double kItemNoise = 0.6;
constexpr double kUserNoise = 0.6;
constexpr double kQueryNoise = 0.3;
constexpr double kClickIfInterested = 0.7;
constexpr double kClickOtherwise = 0.02;
// Rows generated (in parallel) per write.
constexpr size_t kChunk = 1024;

constexpr const char* kTopicWords[] = {
    "astronomy",   "baking",     "basketball", "chess",    "climate",
    "cycling",     "economics",  "fashion",    "film",     "gardening",
    "genetics",    "hiking",     "history",    "jazz",     "medicine",
    "movies",      "music",      "opera",      "painting", "parenting",
    "photography", "physics",    "poetry",     "politics", "robotics",
    "running",     "sailing",    "soccer",     "startups", "tennis",
    "travel",      "video games"};

std::string TopicName(uint32_t t) {
  constexpr uint32_t kWords = sizeof(kTopicWords) / sizeof(kTopicWords[0]);
  if (t < kWords) return kTopicWords[t];
  return absl::StrCat(kTopicWords[t % kWords], " ", t / kWords + 1);
}

float Gelu(float x) {
  return 0.5f * x * (1.0f + std::erf(x / std::numbers::sqrt2_v<float>));
}

// Adds `noise`-norm Gaussian noise to `center` into `out` (size d).
void NoisyCopy(std::span<const float> center, double noise, Rng& rng,
               float* out) {
  const double scale = noise / std::sqrt(static_cast<double>(center.size()));
  for (size_t k = 0; k < center.size(); ++k) {
    out[k] = static_cast<float>(center[k] + scale * rng.Normal());
  }
}

absl::Status Validate(const SyntheticModelOptions& o) {
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  if (o.items == 0) return absl::InvalidArgumentError("--items must be >= 1");
  if (o.dim == 0 || o.dim > 65536) {
    return absl::InvalidArgumentError("--dim must be in [1, 65536]");
  }
  if (o.user_codes == 0 || o.user_codes > 4096 || o.item_codes == 0 ||
      o.item_codes > 4096) {
    return absl::InvalidArgumentError(
        "--user_codes and --item_codes must be in [1, 4096]");
  }
  if (o.topics == 0) return absl::InvalidArgumentError("--topics must be >= 1");
  if (o.impressions > 0 &&
      (o.users == 0 || o.impression_size < 2 || o.impression_size > o.items)) {
    return absl::InvalidArgumentError(
        "impressions need users >= 1 and 2 <= --impression_size <= --items");
  }
  if (o.model_version.empty() || o.model_version.size() > 256 ||
      !IsValidUtf8(o.model_version)) {
    return absl::InvalidArgumentError(
        "--model_version must be 1..256 bytes of UTF-8");
  }
  return absl::OkStatus();
}

std::string UserId(uint64_t u) { return absl::StrCat("U", u + 1); }
std::string ItemId(uint64_t i) { return absl::StrCat("N", i + 1); }

// MIND's time format: "11/15/2019 8:55:22 AM".
std::string MindTime(uint64_t seconds) {
  uint64_t day = 15 + seconds / 86400 % 7;
  uint64_t s = seconds % 86400;
  uint64_t h = s / 3600;
  uint64_t hour12 = h % 12 == 0 ? 12 : h % 12;
  return absl::StrFormat("11/%d/2019 %d:%02d:%02d %s", day, hour12, s / 60 % 60,
                         s % 60, h < 12 ? "AM" : "PM");
}

}  // namespace

absl::Status GenerateSyntheticModel(const SyntheticModelOptions& o) {
  RETURN_IF_ERROR(Validate(o));
  const fs::path out(o.out_dir);
  std::error_code ec;
  fs::create_directories(out / "users", ec);
  if (!ec) fs::create_directories(out / "items", ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(o.out_dir, ": create: ", ec.message()));
  }
  const uint32_t d = o.dim;
  const NpyDType dtype = o.float16 ? NpyDType::kFloat16 : NpyDType::kFloat32;

  // Topic centroids: random unit vectors.
  std::vector<float> centroids(size_t{o.topics} * d);
  {
    Rng rng(o.seed, kCentroidStream);
    for (uint32_t t = 0; t < o.topics; ++t) {
      double norm = 0;
      for (uint32_t k = 0; k < d; ++k) {
        float v = static_cast<float>(rng.Normal());
        centroids[size_t{t} * d + k] = v;
        norm += double{v} * v;
      }
      norm = std::sqrt(std::max(norm, 1e-12));
      for (uint32_t k = 0; k < d; ++k) {
        centroids[size_t{t} * d + k] =
            static_cast<float>(centroids[size_t{t} * d + k] / norm);
      }
    }
  }
  auto centroid = [&](uint32_t t) {
    return std::span<const float>(centroids.data() + size_t{t} * d, d);
  };

  // Items: a topic each, CPE rows near its centroid, keys = gelu(B W).
  std::vector<float> w;
  if (o.item_keys) {
    w.resize(size_t{d} * d);
    Rng rng(o.seed, kProjectionStream);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    for (float& x : w) x = static_cast<float>(scale * rng.Normal());
  }
  std::vector<uint32_t> item_topic(o.items);
  std::vector<std::vector<uint32_t>> items_by_topic(o.topics);
  {
    const uint64_t shape[] = {o.items, o.item_codes, d};
    ASSIGN_OR_RETURN(auto cpe_writer,
                     NpyWriter::Create((out / "items/cpe.npy").string(), dtype,
                                       {shape, shape + 3}));
    std::unique_ptr<NpyWriter> keys_writer;
    if (o.item_keys) {
      ASSIGN_OR_RETURN(keys_writer,
                       NpyWriter::Create((out / "items/keys.npy").string(),
                                         dtype, {shape, shape + 3}));
    }
    // Chunks of items are generated in parallel (each item has its own
    // random stream, so the output does not depend on the thread count)
    // and written in order.
    const size_t row = size_t{o.item_codes} * d;
    std::vector<float> b(kChunk * row);
    std::vector<float> g(o.item_keys ? b.size() : 0);
    std::string ids;
    for (uint64_t first = 0; first < o.items; first += kChunk) {
      const int64_t count =
          static_cast<int64_t>(std::min<uint64_t>(kChunk, o.items - first));
#pragma omp parallel for schedule(dynamic, 16)
      for (int64_t c = 0; c < count; ++c) {
        const uint64_t i = first + static_cast<uint64_t>(c);
        Rng rng(o.seed, kItemStream + i);
        uint32_t t = static_cast<uint32_t>(rng.Below(o.topics));
        item_topic[i] = t;
        float* item_b = b.data() + c * row;
        for (uint32_t j = 0; j < o.item_codes; ++j) {
          NoisyCopy(centroid(t), kItemNoise, rng, item_b + size_t{j} * d);
        }
        if (!o.item_keys) continue;
        for (uint32_t j = 0; j < o.item_codes; ++j) {
          const float* in_row = item_b + size_t{j} * d;
          float* out_row = g.data() + c * row + size_t{j} * d;
          std::fill_n(out_row, d, 0.0f);
          for (uint32_t k = 0; k < d; ++k) {
            const float* w_row = w.data() + size_t{k} * d;
            for (uint32_t x = 0; x < d; ++x) out_row[x] += in_row[k] * w_row[x];
          }
          for (uint32_t x = 0; x < d; ++x) out_row[x] = Gelu(out_row[x]);
        }
      }
      const size_t n = static_cast<size_t>(count) * row;
      RETURN_IF_ERROR(cpe_writer->Append(std::span<const float>(b).first(n)));
      if (keys_writer) {
        RETURN_IF_ERROR(
            keys_writer->Append(std::span<const float>(g).first(n)));
      }
      for (uint64_t i = first; i < first + static_cast<uint64_t>(count); ++i) {
        items_by_topic[item_topic[i]].push_back(static_cast<uint32_t>(i));
        absl::StrAppend(&ids, ItemId(i), "\n");
      }
    }
    RETURN_IF_ERROR(cpe_writer->Finish());
    if (keys_writer) RETURN_IF_ERROR(keys_writer->Finish());
    RETURN_IF_ERROR(WriteFileDurably((out / "items/ids.txt").string(), ids));
  }

  // Users: 1-3 interests, UPE rows near those centroids (round robin),
  // queries near the UPE rows; a one-sentence summary naming the topics.
  std::vector<std::vector<uint32_t>> interests(o.users);
  {
    const uint64_t shape[] = {o.users, o.user_codes, d};
    ASSIGN_OR_RETURN(auto upe_writer,
                     NpyWriter::Create((out / "users/upe.npy").string(), dtype,
                                       {shape, shape + 3}));
    std::unique_ptr<NpyWriter> q_writer;
    if (o.user_queries) {
      ASSIGN_OR_RETURN(q_writer,
                       NpyWriter::Create((out / "users/queries.npy").string(),
                                         dtype, {shape, shape + 3}));
    }
    const size_t row = size_t{o.user_codes} * d;
    std::vector<float> a(kChunk * row);
    std::vector<float> q(o.user_queries ? a.size() : 0);
    std::vector<std::string> sentences(kChunk);
    std::string ids;
    std::string summaries;
    for (uint64_t first = 0; first < o.users; first += kChunk) {
      const int64_t count =
          static_cast<int64_t>(std::min<uint64_t>(kChunk, o.users - first));
#pragma omp parallel for schedule(dynamic, 16)
      for (int64_t c = 0; c < count; ++c) {
        const uint64_t u = first + static_cast<uint64_t>(c);
        Rng rng(o.seed, kUserStream + u);
        uint32_t wanted = 1 + static_cast<uint32_t>(rng.Below(3));
        wanted = std::min(wanted, o.topics);
        std::vector<uint32_t>& mine = interests[u];
        while (mine.size() < wanted) {
          uint32_t t = static_cast<uint32_t>(rng.Below(o.topics));
          if (std::find(mine.begin(), mine.end(), t) == mine.end()) {
            mine.push_back(t);
          }
        }
        float* user_a = a.data() + c * row;
        for (uint32_t i = 0; i < o.user_codes; ++i) {
          NoisyCopy(centroid(mine[i % mine.size()]), kUserNoise, rng,
                    user_a + size_t{i} * d);
        }
        if (o.user_queries) {
          for (uint32_t i = 0; i < o.user_codes; ++i) {
            NoisyCopy(std::span<const float>(user_a + size_t{i} * d, d),
                      kQueryNoise, rng, q.data() + c * row + size_t{i} * d);
          }
        }
        std::vector<std::string> names;
        for (uint32_t t : mine) names.push_back(TopicName(t));
        if (names.size() == 1) {
          sentences[c] = absl::StrCat("Follows ", names[0], " closely.");
        } else {
          std::string last = names.back();
          names.pop_back();
          sentences[c] = absl::StrCat(
              "Interested in ", absl::StrJoin(names, ", "), " and ", last, ".");
        }
      }
      const size_t n = static_cast<size_t>(count) * row;
      RETURN_IF_ERROR(upe_writer->Append(std::span<const float>(a).first(n)));
      if (q_writer) {
        RETURN_IF_ERROR(q_writer->Append(std::span<const float>(q).first(n)));
      }
      for (int64_t c = 0; c < count; ++c) {
        const uint64_t u = first + static_cast<uint64_t>(c);
        nlohmann::json line = {{"user_id", UserId(u)},
                               {"summary", sentences[c]}};
        absl::StrAppend(&ids, UserId(u), "\n");
        absl::StrAppend(&summaries, line.dump(), "\n");
      }
    }
    RETURN_IF_ERROR(upe_writer->Finish());
    if (q_writer) RETURN_IF_ERROR(q_writer->Finish());
    RETURN_IF_ERROR(WriteFileDurably((out / "users/ids.txt").string(), ids));
    RETURN_IF_ERROR(
        WriteFileDurably((out / "users/summaries.jsonl").string(), summaries));
  }

  // MIND behaviors: impression id, user id, time, history, impressions.
  {
    std::string tsv;
    for (uint64_t k = 0; k < o.impressions; ++k) {
      Rng rng(o.seed, kImpressionStream + k);
      uint64_t u = rng.Below(o.users);
      const std::vector<uint32_t>& mine = interests[u];
      std::vector<uint32_t> pool;
      for (uint32_t t : mine) {
        pool.insert(pool.end(), items_by_topic[t].begin(),
                    items_by_topic[t].end());
      }
      auto interested = [&](uint32_t item) {
        return std::find(mine.begin(), mine.end(), item_topic[item]) !=
               mine.end();
      };
      // Up to five distinct earlier clicks from the user's topics.
      std::vector<uint32_t> history_items;
      for (int tries = 0;
           tries < 20 && history_items.size() < 5 && !pool.empty(); ++tries) {
        uint32_t item = pool[rng.Below(pool.size())];
        if (std::find(history_items.begin(), history_items.end(), item) ==
            history_items.end()) {
          history_items.push_back(item);
        }
      }
      std::vector<std::string> history;
      for (uint32_t item : history_items) history.push_back(ItemId(item));
      // Half the candidates from the user's topics, half from anywhere.
      std::vector<uint32_t> candidates;
      while (candidates.size() < o.impression_size) {
        bool from_pool = !pool.empty() && candidates.size() % 2 == 0;
        uint32_t item = from_pool ? pool[rng.Below(pool.size())]
                                  : static_cast<uint32_t>(rng.Below(o.items));
        // On a repeat, probe forward to the next item not yet shown.
        while (std::find(candidates.begin(), candidates.end(), item) !=
               candidates.end()) {
          item = static_cast<uint32_t>((item + 1) % o.items);
        }
        candidates.push_back(item);
      }
      for (size_t i = candidates.size() - 1; i > 0; --i) {
        std::swap(candidates[i], candidates[rng.Below(i + 1)]);
      }
      std::vector<int> clicks(candidates.size());
      for (size_t i = 0; i < candidates.size(); ++i) {
        double p =
            interested(candidates[i]) ? kClickIfInterested : kClickOtherwise;
        clicks[i] = rng.Uniform() < p ? 1 : 0;
      }
      // Every impression has a click and a non-click, as in MIND.
      if (std::count(clicks.begin(), clicks.end(), 1) == 0) {
        size_t best = 0;
        for (size_t i = 0; i < candidates.size(); ++i) {
          if (interested(candidates[i])) {
            best = i;
            break;
          }
        }
        clicks[best] = 1;
      }
      if (std::count(clicks.begin(), clicks.end(), 0) == 0) {
        clicks[rng.Below(clicks.size())] = 0;
      }
      std::vector<std::string> shown;
      for (size_t i = 0; i < candidates.size(); ++i) {
        shown.push_back(absl::StrCat(ItemId(candidates[i]), "-", clicks[i]));
      }
      absl::StrAppend(&tsv, k + 1, "\t", UserId(u), "\t", MindTime(k * 37),
                      "\t", absl::StrJoin(history, " "), "\t",
                      absl::StrJoin(shown, " "), "\n");
    }
    RETURN_IF_ERROR(WriteFileDurably((out / "behaviors.tsv").string(), tsv));
  }

  ModelManifest manifest;
  manifest.model_version = o.model_version;
  manifest.dim = d;
  manifest.user_codes = o.user_codes;
  manifest.item_codes = o.item_codes;
  manifest.user_queries = o.user_queries;
  manifest.item_keys = o.item_keys;
  return WriteFileDurably((out / "manifest.json").string(),
                          ManifestToJson(manifest));
}

}  // namespace embsum::datagen
