#include "store/internal/ann_index.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexIDMap.h"
#include "faiss/IndexIVFFlat.h"
#include "faiss/IndexScalarQuantizer.h"
#include "faiss/clone_index.h"

namespace embsum::store::internal {
namespace {

// FAISS labels: Index::idx_t up to 1.7.3, faiss::idx_t from 1.7.4 (the GPU
// image builds 1.8.0); both are int64_t, as is Index::ntotal.
using FaissIdx = decltype(faiss::Index::ntotal);
static_assert(std::is_same_v<FaissIdx, int64_t>);

// Keeps, per row, the best inner product of one search's results.
void MergeBest(std::span<const float> distances,
               std::span<const FaissIdx> labels,
               absl::flat_hash_map<uint32_t, float>* best) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) continue;
    uint32_t row = static_cast<uint32_t>(labels[i]);
    auto [it, inserted] = best->emplace(row, distances[i]);
    if (!inserted && distances[i] > it->second) it->second = distances[i];
  }
}

}  // namespace

AnnIndex::~AnnIndex() = default;

uint64_t AnnIndex::code_rows() const {
  return codes_ != nullptr ? static_cast<uint64_t>(codes_->ntotal) : 0;
}

// The per-interest index: all n CPE rows of each item in `rows`, labelled by
// the item's row. May throw (FAISS errors), like the rest of Build.
void AnnIndex::BuildCodes(const scoring::ItemArena& arena,
                          const std::vector<uint32_t>& rows,
                          const AnnOptions& options, const AnnIndex* trained,
                          AnnIndex* ann) {
  const scoring::ArenaLayout& layout = arena.layout();
  const uint32_t n = layout.item_codes;
  const uint32_t d = layout.dim;
  const size_t row_vectors = size_t{n} * d;
  std::vector<float> keys(layout.has_keys ? row_vectors : 0);
  // Reads items rows[first, first + count) as n vectors each.
  auto read_items = [&](size_t first, size_t count, std::vector<float>* out,
                        std::vector<FaissIdx>* labels) {
    out->resize(count * row_vectors);
    if (labels != nullptr) labels->resize(count * n);
    for (size_t i = 0; i < count; ++i) {
      const uint32_t row = rows[first + i];
      arena.ReadRow(
          row, std::span<float>(out->data() + i * row_vectors, row_vectors),
          keys);
      if (labels != nullptr) {
        std::fill_n(labels->data() + i * n, n, static_cast<FaissIdx>(row));
      }
    }
  };
  faiss::ScalarQuantizer::QuantizerType qtype = faiss::ScalarQuantizer::QT_8bit;
  if (options.code_index == AnnOptions::CodeIndex::kFp16) {
    qtype = faiss::ScalarQuantizer::QT_fp16;
  }
  const bool fp32 = options.code_index == AnnOptions::CodeIndex::kFp32;
  const size_t vectors = rows.size() * n;
  const size_t bytes_per_vector =
      fp32 ? 4 * d : (qtype == faiss::ScalarQuantizer::QT_fp16 ? 2 * d : d);
  std::unique_ptr<faiss::Index> index;
  if (!ann->ivf_) {
    // Small catalogue: exact per-code search.
    std::unique_ptr<faiss::Index> inner;
    if (fp32) {
      inner = std::make_unique<faiss::IndexFlatIP>(d);
    } else {
      inner = std::make_unique<faiss::IndexScalarQuantizer>(
          d, qtype, faiss::METRIC_INNER_PRODUCT);
    }
    if (!inner->is_trained) {
      // The scalar quantizer's value ranges, from evenly spaced items.
      const size_t sample_items =
          std::min(rows.size(),
                   std::max<size_t>(1, options.train_sample / std::max(1u, n)));
      std::vector<float> sample(sample_items * row_vectors);
      for (size_t i = 0; i < sample_items; ++i) {
        arena.ReadRow(
            rows[i * rows.size() / sample_items],
            std::span<float>(sample.data() + i * row_vectors, row_vectors),
            keys);
      }
      inner->train(static_cast<FaissIdx>(sample_items * n), sample.data());
    }
    auto map = std::make_unique<faiss::IndexIDMap>(inner.release());
    map->own_fields = true;
    index = std::move(map);
  } else {
    std::unique_ptr<faiss::IndexIVF> ivf;
    if (trained != nullptr && trained->codes_ != nullptr &&
        trained->codes_ivf_) {
      ivf.reset(dynamic_cast<faiss::IndexIVF*>(
          faiss::clone_index(trained->codes_.get())));
      if (ivf) ivf->reset();
    }
    if (!ivf) {
      size_t lists = options.code_lists;
      if (lists == 0) lists = static_cast<size_t>(std::sqrt(double(vectors)));
      // Train on the rows of evenly spaced items, about 64 per list.
      const size_t sample_vectors = std::clamp<size_t>(
          64 * lists, n,
          std::max<size_t>(n, std::min(vectors, options.train_sample)));
      const size_t sample_items = std::max<size_t>(1, sample_vectors / n);
      lists = std::clamp<size_t>(lists, 1, sample_items * n);
      auto* quantizer = new faiss::IndexFlatIP(d);
      if (fp32) {
        ivf = std::make_unique<faiss::IndexIVFFlat>(
            quantizer, d, lists, faiss::METRIC_INNER_PRODUCT);
      } else {
        ivf = std::make_unique<faiss::IndexIVFScalarQuantizer>(
            quantizer, d, lists, qtype, faiss::METRIC_INNER_PRODUCT);
      }
      ivf->own_fields = true;
      ivf->cp.niter = 10;
      ivf->cp.max_points_per_centroid = 64;
      ivf->cp.seed = 1234;
      std::vector<float> sample(sample_items * row_vectors);
      std::vector<float> one;
      std::vector<uint32_t> picked(sample_items);
      for (size_t i = 0; i < sample_items; ++i) {
        picked[i] = rows[i * rows.size() / sample_items];
      }
      for (size_t i = 0; i < sample_items; ++i) {
        arena.ReadRow(
            picked[i],
            std::span<float>(sample.data() + i * row_vectors, row_vectors),
            keys);
      }
      ivf->train(static_cast<FaissIdx>(sample_items * n), sample.data());
    }
    ivf->nprobe = std::max<size_t>(1, options.ivf_probes);
    ann->codes_ivf_ = true;
    ann->code_lists_ = ivf->nlist;
    index = std::move(ivf);
  }
  constexpr size_t kChunkItems = 512;
  std::vector<float> chunk;
  std::vector<FaissIdx> labels;
  for (size_t first = 0; first < rows.size(); first += kChunkItems) {
    const size_t count = std::min(kChunkItems, rows.size() - first);
    read_items(first, count, &chunk, &labels);
    index->add_with_ids(static_cast<FaissIdx>(count * n), chunk.data(),
                        labels.data());
  }
  ann->code_bytes_ = vectors * (bytes_per_vector + sizeof(FaissIdx));
  ann->codes_ = std::move(index);
}

absl::StatusOr<std::shared_ptr<const AnnIndex>> AnnIndex::Build(
    const scoring::ItemArena& arena, uint32_t begin, uint32_t end,
    std::span<const uint8_t> live, const AnnOptions& options, bool force_flat,
    const AnnIndex* trained) {
  const scoring::ArenaLayout& layout = arena.layout();
  const uint32_t n = layout.item_codes;
  const uint32_t d = layout.dim;
  const size_t row_vectors = size_t{n} * d;
  std::vector<uint32_t> rows;
  for (uint32_t r = begin; r < end; ++r) {
    if (live[r]) rows.push_back(r);
  }
  std::shared_ptr<AnnIndex> ann(new AnnIndex());
  ann->begin_ = begin;
  ann->end_ = end;
  ann->items_ = rows.size();
  ann->item_codes_ = n;
  ann->ivf_ = !force_flat && rows.size() > options.flat_max_items;

  // Writes into `out` the mean CPE vector (d floats) of each of
  // rows[first, first + count): one indexed vector per item.
  std::vector<float> keys(layout.has_keys ? row_vectors : 0);
  std::vector<float> cpe(row_vectors);
  auto read_rows = [&](size_t first, size_t count, std::vector<float>* out,
                       std::vector<FaissIdx>* labels) {
    out->assign(count * d, 0.0f);
    if (labels != nullptr) labels->resize(count);
    const float scale = 1.0f / static_cast<float>(n);
    for (size_t i = 0; i < count; ++i) {
      uint32_t row = rows[first + i];
      arena.ReadRow(row, cpe, keys);
      float* mean = out->data() + i * d;
      for (uint32_t j = 0; j < n; ++j) {
        const float* v = cpe.data() + size_t{j} * d;
        for (uint32_t x = 0; x < d; ++x) mean[x] += v[x];
      }
      for (uint32_t x = 0; x < d; ++x) mean[x] *= scale;
      if (labels != nullptr) (*labels)[i] = static_cast<FaissIdx>(row);
    }
  };
  // Adds every row in chunks, so memory beyond the index stays small.
  auto add_all = [&](faiss::Index* index) {
    constexpr size_t kChunkRows = 1024;
    std::vector<float> chunk;
    std::vector<FaissIdx> labels;
    for (size_t first = 0; first < rows.size(); first += kChunkRows) {
      size_t count = std::min(kChunkRows, rows.size() - first);
      read_rows(first, count, &chunk, &labels);
      index->add_with_ids(static_cast<FaissIdx>(count), chunk.data(),
                          labels.data());
    }
  };
  try {
    if (!ann->ivf_) {
      auto map = std::make_unique<faiss::IndexIDMap>(new faiss::IndexFlatIP(d));
      map->own_fields = true;
      add_all(map.get());
      ann->index_ = std::move(map);
    } else {
      std::unique_ptr<faiss::IndexIVFFlat> ivf;
      if (trained != nullptr && trained->ivf_) {
        ivf.reset(dynamic_cast<faiss::IndexIVFFlat*>(
            faiss::clone_index(trained->index_.get())));
        if (ivf) ivf->reset();
      }
      if (!ivf) {
        size_t lists = options.ivf_lists;
        if (lists == 0) {
          lists = static_cast<size_t>(std::sqrt(double(rows.size())));
        }
        // Train on evenly spaced items, enough for about 64 per list.
        size_t sample_items =
            std::min(rows.size(), std::max<size_t>(1, options.train_sample));
        sample_items = std::clamp<size_t>(64 * lists, 1, sample_items);
        lists = std::clamp<size_t>(lists, 1, sample_items);
        ivf = std::make_unique<faiss::IndexIVFFlat>(
            new faiss::IndexFlatIP(d), d, lists, faiss::METRIC_INNER_PRODUCT);
        ivf->own_fields = true;
        ivf->cp.niter = 10;
        ivf->cp.max_points_per_centroid = 64;
        ivf->cp.seed = 1234;
        std::vector<float> sample(sample_items * d);
        std::vector<float> one;
        for (size_t i = 0; i < sample_items; ++i) {
          read_rows(i * rows.size() / sample_items, 1, &one, nullptr);
          std::copy(one.begin(), one.end(), sample.data() + i * d);
        }
        ivf->train(static_cast<FaissIdx>(sample_items), sample.data());
      }
      ivf->nprobe = std::max<size_t>(1, options.ivf_probes);
      ann->lists_ = ivf->nlist;
      ann->probes_ = std::min(ivf->nprobe, ivf->nlist);
      add_all(ivf.get());
      ann->index_ = std::move(ivf);
    }
    if (!force_flat && options.code_index != AnnOptions::CodeIndex::kOff &&
        !rows.empty()) {
      BuildCodes(arena, rows, options, trained, ann.get());
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("build ANN index: ", e.what()));
  }
  // The GPU copy is optional: without one (off, no device, copy failed and
  // logged) every search runs on the CPU index.
  if (AnnGpuIndex::kCompiledIn && options.gpu != AnnOptions::Gpu::kOff &&
      ann->index_->ntotal > 0) {
    ann->gpu_ = AnnGpuIndex::Create(
        *ann->index_, options,
        absl::StrCat(ann->ivf_ ? "IVF" : "flat", ", rows ", begin, "..", end,
                     ", ", ann->items_, " items"),
        options.gpu_log);
  }
  return std::shared_ptr<const AnnIndex>(std::move(ann));
}

absl::Status AnnIndex::SearchRaw(Which which, std::span<const float> queries,
                                 uint32_t nq, size_t k, size_t nprobe,
                                 int threads, std::vector<float>* distances,
                                 std::vector<int64_t>* labels) const {
  distances->clear();
  labels->clear();
  faiss::Index* index = which == Which::kMean ? index_.get() : codes_.get();
  if (index == nullptr) {
    return absl::FailedPreconditionError(
        "ANN search: this index has no per-interest part");
  }
  if (index->ntotal == 0 || nq == 0 || k == 0) return absl::OkStatus();
  k = std::min<size_t>(k, static_cast<size_t>(index->ntotal));
  distances->resize(size_t{nq} * k);
  labels->resize(size_t{nq} * k);
  const bool is_ivf = which == Which::kMean ? ivf_ : codes_ivf_;
  const size_t lists = which == Which::kMean ? lists_ : code_lists_;
  const bool own_probes = is_ivf && nprobe > 0;
  const int previous_threads = omp_get_max_threads();
  if (threads > 0) omp_set_num_threads(threads);
  try {
    faiss::SearchParametersIVF params;
    if (own_probes) params.nprobe = std::min(nprobe, lists);
    index->search(nq, queries.data(), static_cast<FaissIdx>(k),
                  distances->data(), labels->data(),
                  own_probes ? &params : nullptr);
  } catch (const std::exception& e) {
    omp_set_num_threads(previous_threads);
    return absl::InternalError(absl::StrCat("ANN search: ", e.what()));
  }
  omp_set_num_threads(previous_threads);
  return absl::OkStatus();
}

absl::Status AnnIndex::Search(
    std::span<const float> queries, uint32_t nq, size_t k, int threads,
    absl::flat_hash_map<uint32_t, float>* best) const {
  return Search(queries, nq, k, 0, threads, best);
}

absl::Status AnnIndex::Search(
    std::span<const float> queries, uint32_t nq, size_t k, size_t nprobe,
    int threads, absl::flat_hash_map<uint32_t, float>* best) const {
  if (index_->ntotal == 0 || nq == 0 || k == 0) return absl::OkStatus();
  k = std::min<size_t>(k, static_cast<size_t>(index_->ntotal));
  std::vector<float> distances(size_t{nq} * k);
  std::vector<FaissIdx> labels(size_t{nq} * k);
  // A non-default probe count is a CPU search parameter (the GPU copy keeps
  // the build's nprobe).
  const bool own_probes = ivf_ && nprobe > 0;
  if (!own_probes && gpu_ != nullptr && gpu_->Accepts(k) &&
      gpu_->Search(nq, queries.data(), static_cast<FaissIdx>(k),
                   distances.data(), labels.data())
          .ok()) {
    MergeBest(distances, labels, best);
    return absl::OkStatus();
  }
  // CPU: no GPU copy, k too large for it, or its search failed (logged).
  // The thread limit is per calling thread: restore it, so that later
  // OpenMP work on this thread (an index rebuild, say) is not serialised.
  const int previous_threads = omp_get_max_threads();
  if (threads > 0) omp_set_num_threads(threads);
  try {
    faiss::SearchParametersIVF params;
    if (own_probes) params.nprobe = std::min(nprobe, lists_);
    index_->search(nq, queries.data(), static_cast<FaissIdx>(k),
                   distances.data(), labels.data(),
                   own_probes ? &params : nullptr);
  } catch (const std::exception& e) {
    omp_set_num_threads(previous_threads);
    return absl::InternalError(absl::StrCat("ANN search: ", e.what()));
  }
  omp_set_num_threads(previous_threads);
  MergeBest(distances, labels, best);
  return absl::OkStatus();
}

}  // namespace embsum::store::internal

namespace embsum::store {

std::optional<AnnOptions::CodeIndex> ParseAnnCodeIndex(std::string_view text) {
  if (text == "int8") return AnnOptions::CodeIndex::kInt8;
  if (text == "fp16") return AnnOptions::CodeIndex::kFp16;
  if (text == "fp32") return AnnOptions::CodeIndex::kFp32;
  if (text == "off") return AnnOptions::CodeIndex::kOff;
  return std::nullopt;
}

std::optional<AnnOptions::Gpu> ParseAnnGpu(std::string_view text) {
  if (text == "auto") return AnnOptions::Gpu::kAuto;
  if (text == "off") return AnnOptions::Gpu::kOff;
  return std::nullopt;
}

}  // namespace embsum::store
