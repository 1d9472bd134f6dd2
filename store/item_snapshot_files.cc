#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexIDMap.h"
#include "faiss/impl/FaissException.h"
#include "faiss/impl/io.h"
#include "faiss/index_io.h"
#include "nlohmann/json.hpp"
#include "store/internal/file_util.h"
#include "store/internal/ids.h"
#include "store/internal/item_files.h"

namespace embsum::store::internal {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
// FAISS labels: Index::idx_t up to 1.7.3, faiss::idx_t from 1.7.4 (the GPU
// image builds 1.8.0); both are int64_t, as is Index::ntotal.
using FaissIdx = decltype(faiss::Index::ntotal);

static_assert(std::endian::native == std::endian::little,
              "item files store raw little-endian floats");

constexpr int kSnapshotFormat = 1;
constexpr uint8_t kLogVersion = 1;
constexpr uint8_t kLogUpsert = 1;
constexpr uint8_t kLogTombstone = 2;

std::unique_ptr<faiss::Index> NewFlatIdMap(uint32_t d) {
  auto map = std::make_unique<faiss::IndexIDMap2>(new faiss::IndexFlatIP(d));
  map->own_fields = true;
  return map;
}

// Serialises `index`, writes it to `path` durably, and returns the file's
// checksum in *checksum.
absl::Status WriteIndexDurably(const faiss::Index& index,
                               const std::string& path, uint64_t* checksum) {
  faiss::VectorIOWriter writer;
  try {
    faiss::write_index(&index, &writer);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(path, ": write: ", e.what()));
  }
  *checksum = Checksum64(writer.data.data(), writer.data.size());
  return WriteNewFileDurably(path, writer.data.data(), writer.data.size());
}

// Reads a whole file into `out`.
absl::Status ReadWholeFile(const std::string& path, std::vector<uint8_t>* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, path, "open");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, path, "stat");
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out->size()) {
    ssize_t n = ::read(fd, out->data() + done, out->size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::close(fd);
      return ErrnoError(err, path, "read");
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return absl::OkStatus();
}

// Reads one shard file and checks it holds rows*n vectors of dimension d
// with ids first_row*n, first_row*n + 1, ... in order.
absl::StatusOr<std::unique_ptr<faiss::Index>> ReadShard(
    const std::string& path, const std::string& name, uint64_t first_row,
    uint64_t rows, uint64_t checksum, const ModelManifest& m) {
  const uint64_t vectors = rows * m.item_codes;
  const uint64_t payload = vectors * m.dim * sizeof(float) + vectors * 8;
  faiss::VectorIOReader reader;
  if (absl::Status s = ReadWholeFile(path, &reader.data); !s.ok()) {
    return absl::DataLossError(s.message());
  }
  // The FAISS header and vector lengths take well under 4 KiB.
  if (reader.data.size() < payload || reader.data.size() > payload + 4096) {
    return absl::DataLossError(absl::StrCat(
        name, ": ", reader.data.size(), " bytes, expected about ", payload,
        " for ", rows, " items (truncated or not this snapshot's file)"));
  }
  if (Checksum64(reader.data.data(), reader.data.size()) != checksum) {
    return absl::DataLossError(
        absl::StrCat(name, ": checksum mismatch (the file is corrupt)"));
  }
  std::unique_ptr<faiss::Index> index;
  try {
    index.reset(faiss::read_index(&reader));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(name, ": ", e.what()));
  }
  reader.data = std::vector<uint8_t>();
  auto* map = dynamic_cast<faiss::IndexIDMap2*>(index.get());
  const faiss::IndexFlat* flat =
      map == nullptr ? nullptr
                     : dynamic_cast<const faiss::IndexFlat*>(map->index);
  if (flat == nullptr || flat->metric_type != faiss::METRIC_INNER_PRODUCT) {
    return absl::DataLossError(
        absl::StrCat(name, ": not an IndexIDMap2 over IndexFlatIP"));
  }
  if (static_cast<uint64_t>(map->d) != m.dim ||
      static_cast<uint64_t>(map->ntotal) != vectors ||
      map->id_map.size() != vectors ||
      flat->codes.size() != vectors * m.dim * sizeof(float)) {
    return absl::DataLossError(
        absl::StrCat(name, ": holds ", map->ntotal, " vectors of dimension ",
                     map->d, ", expected ", vectors, " of dimension ", m.dim));
  }
  for (uint64_t k = 0; k < vectors; ++k) {
    if (map->id_map[k] != static_cast<FaissIdx>(first_row * m.item_codes + k)) {
      return absl::DataLossError(absl::StrCat(name, ": vector ", k, " has id ",
                                              map->id_map[k], ", expected ",
                                              first_row * m.item_codes + k));
    }
  }
  return index;
}

std::span<const float> FlatData(const faiss::Index& index) {
  const auto& map = static_cast<const faiss::IndexIDMap2&>(index);
  const auto* flat = static_cast<const faiss::IndexFlat*>(map.index);
  return std::span<const float>(flat->get_xb(),
                                static_cast<size_t>(flat->ntotal) * flat->d);
}

}  // namespace

std::string SnapshotName(uint64_t generation) {
  return absl::StrFormat("snapshot-%06d", generation);
}

int64_t SnapshotGeneration(absl::string_view name) {
  constexpr absl::string_view kPrefix = "snapshot-";
  if (name.substr(0, kPrefix.size()) != kPrefix) return -1;
  absl::string_view digits = name.substr(kPrefix.size());
  if (digits.empty() || digits.size() > 18) return -1;
  int64_t g = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    g = g * 10 + (c - '0');
  }
  return g;
}

absl::StatusOr<std::string> ReadCurrentSnapshot(const std::string& items_dir) {
  std::string path = absl::StrCat(items_dir, "/", kItemsCurrentFile);
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": ", text.status().message(),
                     " (not a data directory, or an incomplete ingest)"));
  }
  std::string name(absl::StripAsciiWhitespace(*text));
  if (SnapshotGeneration(name) < 0) {
    return absl::DataLossError(absl::StrCat(path, ": \"", name.substr(0, 64),
                                            "\" is not a snapshot name"));
  }
  return name;
}

absl::Status WriteCurrentSnapshot(const std::string& items_dir,
                                  const std::string& snapshot_name) {
  return WriteFileDurably(absl::StrCat(items_dir, "/", kItemsCurrentFile),
                          snapshot_name + "\n");
}

absl::StatusOr<std::unique_ptr<SnapshotWriter>> SnapshotWriter::Create(
    const std::string& dir, const ModelManifest& manifest, size_t shard_bytes) {
  std::error_code ec;
  if (!fs::create_directory(dir, ec) || ec) {
    return absl::InternalError(
        absl::StrCat(dir, ": create: ", ec ? ec.message() : "already exists"));
  }
  std::unique_ptr<SnapshotWriter> w(new SnapshotWriter());
  w->dir_ = dir;
  w->manifest_ = manifest;
  size_t row_bytes = size_t{manifest.item_codes} * manifest.dim * sizeof(float);
  w->rows_per_shard_ = std::max<size_t>(1, shard_bytes / row_bytes);
  w->cpe_ = NewFlatIdMap(manifest.dim);
  if (manifest.item_keys) w->keys_ = NewFlatIdMap(manifest.dim);
  return w;
}

SnapshotWriter::~SnapshotWriter() = default;

absl::Status SnapshotWriter::Add(absl::string_view id,
                                 std::span<const float> cpe,
                                 std::span<const float> keys) {
  const uint32_t n = manifest_.item_codes;
  const uint64_t row = ids_.size();
  std::vector<FaissIdx> labels(n);
  for (uint32_t j = 0; j < n; ++j) {
    labels[j] = static_cast<FaissIdx>(row * n + j);
  }
  try {
    cpe_->add_with_ids(n, cpe.data(), labels.data());
    if (keys_) keys_->add_with_ids(n, keys.data(), labels.data());
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(dir_, ": add: ", e.what()));
  }
  ids_.emplace_back(id);
  if (ids_.size() - shard_first_row_ >= rows_per_shard_) return FlushShard();
  return absl::OkStatus();
}

absl::Status SnapshotWriter::FlushShard() {
  uint64_t rows = ids_.size() - shard_first_row_;
  if (rows == 0) return absl::OkStatus();
  size_t shard = shard_rows_.size();
  std::string cpe_name = absl::StrFormat("cpe-%05d.faiss", shard);
  uint64_t cpe_sum = 0;
  uint64_t keys_sum = 0;
  RETURN_IF_ERROR(
      WriteIndexDurably(*cpe_, absl::StrCat(dir_, "/", cpe_name), &cpe_sum));
  std::string keys_name;
  if (keys_) {
    keys_name = absl::StrFormat("keys-%05d.faiss", shard);
    RETURN_IF_ERROR(WriteIndexDurably(
        *keys_, absl::StrCat(dir_, "/", keys_name), &keys_sum));
    keys_ = NewFlatIdMap(manifest_.dim);
  }
  shard_checksums_.push_back(cpe_sum);
  shard_checksums_.push_back(keys_sum);
  cpe_ = NewFlatIdMap(manifest_.dim);
  shard_files_.push_back(cpe_name);
  shard_files_.push_back(keys_name);
  shard_rows_.push_back(rows);
  shard_first_row_ = ids_.size();
  return absl::OkStatus();
}

absl::Status SnapshotWriter::Finish() {
  RETURN_IF_ERROR(FlushShard());
  std::string ids;
  for (const std::string& id : ids_) absl::StrAppend(&ids, id, "\n");
  RETURN_IF_ERROR(WriteFileDurably(absl::StrCat(dir_, "/ids.txt"), ids));
  Json shards = Json::array();
  uint64_t first = 0;
  for (size_t s = 0; s < shard_rows_.size(); ++s) {
    Json shard = {{"first_row", first},
                  {"rows", shard_rows_[s]},
                  {"cpe", shard_files_[2 * s]},
                  {"cpe_xxh64", shard_checksums_[2 * s]}};
    if (manifest_.item_keys) {
      shard["keys"] = shard_files_[2 * s + 1];
      shard["keys_xxh64"] = shard_checksums_[2 * s + 1];
    }
    shards.push_back(shard);
    first += shard_rows_[s];
  }
  Json meta = {{"format", kSnapshotFormat},          {"items", ids_.size()},
               {"item_codes", manifest_.item_codes}, {"dim", manifest_.dim},
               {"item_keys", manifest_.item_keys},   {"shards", shards}};
  RETURN_IF_ERROR(
      WriteFileDurably(absl::StrCat(dir_, "/meta.json"), meta.dump(1) + "\n"));
  return FsyncPath(dir_);
}

absl::StatusOr<std::unique_ptr<SnapshotReader>> SnapshotReader::Open(
    const std::string& dir, const ModelManifest& manifest) {
  std::string meta_path = absl::StrCat(dir, "/meta.json");
  auto text = ReadFileToString(meta_path);
  if (!text.ok()) {
    return absl::DataLossError(
        absl::StrCat(meta_path, ": ", text.status().message()));
  }
  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(meta_path, ": ", what));
  };
  Json meta = Json::parse(*text, nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) return corrupt("not JSON");
  auto reader = std::unique_ptr<SnapshotReader>(new SnapshotReader());
  reader->dir_ = dir;
  reader->manifest_ = manifest;
  uint64_t items = 0;
  try {
    if (meta.at("format").get<int>() != kSnapshotFormat) {
      return corrupt("unknown format");
    }
    items = meta.at("items").get<uint64_t>();
    if (meta.at("item_codes").get<uint32_t>() != manifest.item_codes ||
        meta.at("dim").get<uint32_t>() != manifest.dim ||
        meta.at("item_keys").get<bool>() != manifest.item_keys) {
      return absl::FailedPreconditionError(absl::StrCat(
          meta_path, ": snapshot shape does not match manifest.json"));
    }
    uint64_t next = 0;
    for (const Json& s : meta.at("shards")) {
      Shard shard;
      shard.first_row = s.at("first_row").get<uint64_t>();
      shard.rows = s.at("rows").get<uint64_t>();
      shard.cpe = s.at("cpe").get<std::string>();
      shard.cpe_checksum = s.at("cpe_xxh64").get<uint64_t>();
      if (manifest.item_keys) {
        shard.keys = s.at("keys").get<std::string>();
        shard.keys_checksum = s.at("keys_xxh64").get<uint64_t>();
      }
      if (shard.first_row != next || shard.rows == 0) {
        return corrupt("shards do not cover the rows in order");
      }
      next += shard.rows;
      for (const std::string& f : {shard.cpe, shard.keys}) {
        if (f.find('/') != std::string::npos || f == "." || f == "..") {
          return corrupt("bad shard file name");
        }
      }
      reader->shards_.push_back(std::move(shard));
    }
    if (next != items) return corrupt("shards do not add up to the items");
  } catch (const Json::exception& e) {
    return corrupt(e.what());
  }
  std::string ids_path = absl::StrCat(dir, "/ids.txt");
  auto ids = ReadIds(ids_path, ids_path);
  if (!ids.ok()) return absl::DataLossError(ids.status().message());
  if (ids->size() != items) {
    return absl::DataLossError(absl::StrCat(ids_path, ": ", ids->size(),
                                            " ids, meta.json says ", items));
  }
  reader->ids_ = std::move(*ids);
  return reader;
}

absl::Status SnapshotReader::ForEachShard(const ShardFn& fn) const {
  for (const Shard& shard : shards_) {
    std::string cpe_path = absl::StrCat(dir_, "/", shard.cpe);
    ASSIGN_OR_RETURN(auto cpe,
                     ReadShard(cpe_path, cpe_path, shard.first_row, shard.rows,
                               shard.cpe_checksum, manifest_));
    std::unique_ptr<faiss::Index> keys;
    if (manifest_.item_keys) {
      std::string keys_path = absl::StrCat(dir_, "/", shard.keys);
      ASSIGN_OR_RETURN(
          keys, ReadShard(keys_path, keys_path, shard.first_row, shard.rows,
                          shard.keys_checksum, manifest_));
    }
    RETURN_IF_ERROR(fn(shard.first_row, shard.rows, FlatData(*cpe),
                       keys ? FlatData(*keys) : std::span<const float>()));
  }
  return absl::OkStatus();
}

std::string EncodeItemLogUpsert(uint32_t n, uint32_t d,
                                std::span<const float> cpe,
                                std::span<const float> keys) {
  std::string out;
  out.reserve(12 + (cpe.size() + keys.size()) * sizeof(float));
  out.push_back(static_cast<char>(kLogVersion));
  out.push_back(static_cast<char>(kLogUpsert));
  out.push_back(static_cast<char>(keys.empty() ? 0 : 1));
  out.push_back(0);
  for (uint32_t v : {n, d}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  }
  out.append(reinterpret_cast<const char*>(cpe.data()),
             cpe.size() * sizeof(float));
  out.append(reinterpret_cast<const char*>(keys.data()),
             keys.size() * sizeof(float));
  return out;
}

std::string EncodeItemLogTombstone() {
  return std::string(
      {static_cast<char>(kLogVersion), static_cast<char>(kLogTombstone), 0, 0});
}

absl::Status DecodeItemLog(absl::string_view value, const ModelManifest& m,
                           absl::string_view where, ItemLogEntry* out) {
  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("item log entry ", where, ": ", what));
  };
  if (value.size() < 4 || static_cast<uint8_t>(value[0]) != kLogVersion) {
    return corrupt("unknown version or truncated");
  }
  uint8_t kind = static_cast<uint8_t>(value[1]);
  if (kind == kLogTombstone) {
    if (value.size() != 4) return corrupt("malformed tombstone");
    out->tombstone = true;
    out->cpe.clear();
    out->keys.clear();
    return absl::OkStatus();
  }
  if (kind != kLogUpsert || value.size() < 12) return corrupt("unknown kind");
  bool has_keys = value[2] != 0;
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= uint32_t{static_cast<unsigned char>(value[at + i])} << (8 * i);
    }
    return v;
  };
  if (u32(4) != m.item_codes || u32(8) != m.dim || has_keys != m.item_keys) {
    return corrupt("shape does not match the manifest");
  }
  size_t elements = size_t{m.item_codes} * m.dim;
  if (value.size() != 12 + elements * sizeof(float) * (has_keys ? 2 : 1)) {
    return corrupt("wrong size");
  }
  out->tombstone = false;
  out->cpe.resize(elements);
  std::memcpy(out->cpe.data(), value.data() + 12, elements * sizeof(float));
  out->keys.resize(has_keys ? elements : 0);
  if (has_keys) {
    std::memcpy(out->keys.data(), value.data() + 12 + elements * sizeof(float),
                elements * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace embsum::store::internal
