#include "store/manifest.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace embsum::store {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kMaxDim = 65536;
constexpr uint64_t kMaxCodes = 4096;

absl::Status FieldError(absl::string_view source, absl::string_view field,
                        absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": field \"", field, "\": ", problem));
}

absl::StatusOr<uint32_t> GetCount(const Json& j, absl::string_view source,
                                  const char* field, uint64_t max) {
  auto it = j.find(field);
  if (it == j.end()) return FieldError(source, field, "missing");
  if (!it->is_number_integer()) {
    return FieldError(source, field,
                      absl::StrCat("expected an integer, got ", it->dump()));
  }
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v >= 1 && v <= max) return static_cast<uint32_t>(v);
  }
  return FieldError(
      source, field,
      absl::StrCat("must be in [1, ", max, "], got ", it->dump()));
}

absl::StatusOr<bool> GetBool(const Json& j, absl::string_view source,
                             const char* field) {
  auto it = j.find(field);
  if (it == j.end()) return FieldError(source, field, "missing");
  if (!it->is_boolean()) {
    return FieldError(source, field,
                      absl::StrCat("expected true or false, got ", it->dump()));
  }
  return it->get<bool>();
}

}  // namespace

absl::StatusOr<ModelManifest> ParseManifest(std::string_view json_text,
                                            std::string_view source_name) {
  const absl::string_view json(json_text.data(), json_text.size());
  const absl::string_view source(source_name.data(), source_name.size());
  Json j = Json::parse(json.begin(), json.end(), /*cb=*/nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a JSON object"));
  }
  ModelManifest m;
  auto fv = j.find("format_version");
  if (fv == j.end()) return FieldError(source, "format_version", "missing");
  if (!fv->is_number_unsigned() || fv->get<uint64_t>() != 1) {
    return FieldError(source, "format_version",
                      absl::StrCat("unsupported version ", fv->dump(),
                                   " (this build reads version 1)"));
  }
  m.format_version = 1;
  auto mv = j.find("model_version");
  if (mv == j.end()) return FieldError(source, "model_version", "missing");
  if (!mv->is_string()) {
    return FieldError(source, "model_version",
                      absl::StrCat("expected a string, got ", mv->dump()));
  }
  m.model_version = mv->get<std::string>();
  if (m.model_version.empty() || m.model_version.size() > 256) {
    return FieldError(source, "model_version", "must be 1..256 bytes");
  }
  for (char c : m.model_version) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return FieldError(source, "model_version",
                        "contains a control character");
    }
  }
  auto dim = GetCount(j, source, "dim", kMaxDim);
  if (!dim.ok()) return dim.status();
  m.dim = *dim;
  auto uc = GetCount(j, source, "user_codes", kMaxCodes);
  if (!uc.ok()) return uc.status();
  m.user_codes = *uc;
  auto ic = GetCount(j, source, "item_codes", kMaxCodes);
  if (!ic.ok()) return ic.status();
  m.item_codes = *ic;
  auto uq = GetBool(j, source, "user_queries");
  if (!uq.ok()) return uq.status();
  m.user_queries = *uq;
  auto ik = GetBool(j, source, "item_keys");
  if (!ik.ok()) return ik.status();
  m.item_keys = *ik;
  if (auto ls = j.find("log_sequence"); ls != j.end()) {
    if (!ls->is_number_unsigned()) {
      return FieldError(
          source, "log_sequence",
          absl::StrCat("expected an unsigned integer, got ", ls->dump()));
    }
    m.log_sequence = ls->get<uint64_t>();
  }
  return m;
}

std::string ManifestToJson(const ModelManifest& manifest) {
  Json j = {
      {"format_version", manifest.format_version},
      {"model_version", manifest.model_version},
      {"dim", manifest.dim},
      {"user_codes", manifest.user_codes},
      {"item_codes", manifest.item_codes},
      {"user_queries", manifest.user_queries},
      {"item_keys", manifest.item_keys},
  };
  if (manifest.log_sequence != 0) j["log_sequence"] = manifest.log_sequence;
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace embsum::store
