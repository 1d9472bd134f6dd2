#include "store/internal/npy.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "scoring/dtype.h"

namespace embsum::store {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

std::string ShapeString(std::span<const uint64_t> shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// A parsed value of the header dictionary: a string, a bool or a tuple of
// non-negative integers.
struct HeaderValue {
  enum class Kind { kString, kBool, kTuple } kind = Kind::kString;
  std::string str;
  bool boolean = false;
  std::vector<uint64_t> tuple;
};

// Recursive-descent parser of the Python literal numpy writes, for example
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  absl::Status Parse(std::map<std::string, HeaderValue>* out) {
    SkipSpace();
    if (!Consume('{')) return Error("expected '{'");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      std::string key;
      if (!ParseString(&key)) return Error("expected a quoted key");
      SkipSpace();
      if (!Consume(':')) return Error("expected ':'");
      SkipSpace();
      HeaderValue value;
      if (Peek() == '\'' || Peek() == '"') {
        value.kind = HeaderValue::Kind::kString;
        if (!ParseString(&value.str)) return Error("unterminated string");
      } else if (Peek() == '(') {
        value.kind = HeaderValue::Kind::kTuple;
        absl::Status s = ParseTuple(&value.tuple);
        if (!s.ok()) return s;
      } else if (ConsumeWord("True")) {
        value.kind = HeaderValue::Kind::kBool;
        value.boolean = true;
      } else if (ConsumeWord("False")) {
        value.kind = HeaderValue::Kind::kBool;
        value.boolean = false;
      } else {
        return Error(absl::StrCat("unsupported value for key '", key, "'"));
      }
      if (!out->emplace(key, std::move(value)).second) {
        return Error(absl::StrCat("duplicate key '", key, "'"));
      }
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume('}')) break;
      return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("trailing characters after '}'");
    return absl::OkStatus();
  }

 private:
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool Consume(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }
  bool ConsumeWord(absl::string_view w) {
    if (text_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }
  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\t' ||
            text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool ParseString(std::string* out) {
    char quote = Peek();
    if (quote != '\'' && quote != '"') return false;
    ++pos_;
    size_t end = text_.find(quote, pos_);
    if (end == absl::string_view::npos) return false;
    *out = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  absl::Status ParseTuple(std::vector<uint64_t>* out) {
    Consume('(');
    while (true) {
      SkipSpace();
      if (Consume(')')) return absl::OkStatus();
      if (Peek() < '0' || Peek() > '9') {
        return Error("shape must be a tuple of non-negative integers");
      }
      uint64_t v = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        uint64_t digit = static_cast<uint64_t>(Peek() - '0');
        if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
          return Error("shape dimension overflows 64 bits");
        }
        v = v * 10 + digit;
        ++pos_;
      }
      // Python long suffix of old numpy versions.
      Consume('L');
      out->push_back(v);
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume(')')) return absl::OkStatus();
      return Error("expected ',' or ')' in shape");
    }
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("header: ", what, " at offset ", pos_));
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

absl::Status Bad(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

}  // namespace

size_t NpyDTypeSize(NpyDType dtype) {
  return dtype == NpyDType::kFloat16 ? 2 : 4;
}

absl::StatusOr<NpyHeader> ParseNpyHeader(std::span<const std::byte> file,
                                         absl::string_view name) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(file.data());
  if (file.size() < kMagicSize + 2 ||
      std::memcmp(bytes, kMagic, kMagicSize) != 0) {
    return Bad(name, "not a .npy file (missing \\x93NUMPY magic)");
  }
  NpyHeader h;
  int major = bytes[6];
  int minor = bytes[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    return Bad(name, absl::StrCat("unsupported .npy version ", major, ".",
                                  minor, " (need 1.0, 2.0 or 3.0)"));
  }
  h.major_version = major;
  size_t len_size = major == 1 ? 2 : 4;
  size_t prefix = kMagicSize + 2 + len_size;
  if (file.size() < prefix) return Bad(name, "truncated header");
  uint64_t header_len = bytes[8] | (uint64_t{bytes[9]} << 8);
  if (len_size == 4) {
    header_len |= (uint64_t{bytes[10]} << 16) | (uint64_t{bytes[11]} << 24);
  }
  if (file.size() - prefix < header_len) {
    return Bad(name, absl::StrCat("truncated header: needs ", header_len,
                                  " bytes, file has ", file.size() - prefix));
  }
  absl::string_view text(reinterpret_cast<const char*>(bytes + prefix),
                         header_len);
  if (major < 3) {
    for (char c : text) {
      if (static_cast<unsigned char>(c) >= 0x80) {
        return Bad(name, "header: non-ASCII byte in a version 1/2 header");
      }
    }
  }
  std::map<std::string, HeaderValue> dict;
  HeaderParser parser(text);
  if (absl::Status s = parser.Parse(&dict); !s.ok()) {
    return Bad(name, s.message());
  }
  for (const auto& [key, value] : dict) {
    if (key != "descr" && key != "fortran_order" && key != "shape") {
      return Bad(name, absl::StrCat("header: unexpected key '", key, "'"));
    }
  }
  auto descr = dict.find("descr");
  if (descr == dict.end() || descr->second.kind != HeaderValue::Kind::kString) {
    return Bad(name, "header: missing 'descr' string");
  }
  if (descr->second.str == "<f4") {
    h.dtype = NpyDType::kFloat32;
  } else if (descr->second.str == "<f2") {
    h.dtype = NpyDType::kFloat16;
  } else {
    return Bad(name, absl::StrCat("dtype '", descr->second.str,
                                  "' is not supported (need '<f4' or '<f2')"));
  }
  auto fortran = dict.find("fortran_order");
  if (fortran == dict.end() ||
      fortran->second.kind != HeaderValue::Kind::kBool) {
    return Bad(name, "header: missing 'fortran_order' boolean");
  }
  if (fortran->second.boolean) {
    return Bad(name, "fortran_order is True (need C order)");
  }
  auto shape = dict.find("shape");
  if (shape == dict.end() || shape->second.kind != HeaderValue::Kind::kTuple) {
    return Bad(name, "header: missing 'shape' tuple");
  }
  h.shape = shape->second.tuple;
  h.data_offset = prefix + header_len;
  // NumPy pads the header to a multiple of 64 bytes; an unaligned offset
  // would make every element an unaligned load.
  if (h.data_offset % NpyDTypeSize(h.dtype) != 0) {
    return Bad(name, absl::StrCat("data starts at byte ", h.data_offset,
                                  ", not a multiple of the element size ",
                                  NpyDTypeSize(h.dtype),
                                  " (header not padded as NumPy pads it)"));
  }
  uint64_t elements = 1;
  for (uint64_t dim : h.shape) {
    if (dim != 0 && elements > std::numeric_limits<uint64_t>::max() / 8 / dim) {
      return Bad(name,
                 absl::StrCat("shape ", ShapeString(h.shape), " is too large"));
    }
    elements *= dim;
  }
  uint64_t data_bytes = elements * NpyDTypeSize(h.dtype);
  uint64_t have = file.size() - h.data_offset;
  if (have < data_bytes) {
    return Bad(
        name, absl::StrCat("truncated: shape ", ShapeString(h.shape), " needs ",
                           data_bytes, " bytes of data, file has ", have));
  }
  if (have > data_bytes) {
    return Bad(name, absl::StrCat(have - data_bytes,
                                  " unexpected bytes after the data of shape ",
                                  ShapeString(h.shape)));
  }
  return h;
}

absl::StatusOr<std::unique_ptr<NpyArray>> NpyArray::Open(
    const std::string& path, std::string name) {
  auto file = internal::MappedFile::Open(path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat(name, ": ", file.status().message()));
  }
  auto header = ParseNpyHeader(
      std::span<const std::byte>((*file)->data(), (*file)->size()), name);
  if (!header.ok()) return header.status();
  std::unique_ptr<NpyArray> array(new NpyArray());
  array->name_ = std::move(name);
  array->file_ = std::move(*file);
  array->header_ = std::move(*header);
  size_t row_elements = 1;
  for (size_t i = 1; i < array->header_.shape.size(); ++i) {
    row_elements *= array->header_.shape[i];
  }
  array->row_elements_ = row_elements;
  return array;
}

uint64_t NpyArray::rows() const {
  return header_.shape.empty() ? 1 : header_.shape[0];
}

absl::Status NpyArray::CheckShape(std::span<const uint64_t> expected) const {
  if (std::equal(expected.begin(), expected.end(), header_.shape.begin(),
                 header_.shape.end())) {
    return absl::OkStatus();
  }
  return Bad(name_, absl::StrCat("shape ", ShapeString(header_.shape),
                                 " does not match the manifest: expected ",
                                 ShapeString(expected)));
}

const std::byte* NpyArray::row_data(uint64_t row) const {
  return file_->data() + header_.data_offset +
         row * row_elements_ * NpyDTypeSize(header_.dtype);
}

void NpyArray::ReadRow(uint64_t row, std::span<float> out) const {
  if (row_elements_ == 0) return;  // a shape with a 0 past the first axis
  const std::byte* src = row_data(row);
  if (header_.dtype == NpyDType::kFloat32) {
    std::memcpy(out.data(), src, row_elements_ * sizeof(float));
  } else {
    scoring::ConvertToFloat(src, scoring::DType::kFloat16,
                            out.first(row_elements_));
  }
}

absl::StatusOr<std::unique_ptr<NpyWriter>> NpyWriter::Create(
    const std::string& path, NpyDType dtype, std::vector<uint64_t> shape) {
  std::unique_ptr<NpyWriter> w(new NpyWriter());
  w->path_ = path;
  w->dtype_ = dtype;
  w->expected_ = 1;
  for (uint64_t d : shape) w->expected_ *= d;
  w->file_ = std::fopen(path.c_str(), "wbe");
  if (w->file_ == nullptr) return internal::ErrnoError(errno, path, "create");
  std::setvbuf(w->file_, nullptr, _IOFBF, 1 << 20);
  std::string dict = absl::StrCat(
      "{'descr': '", dtype == NpyDType::kFloat16 ? "<f2" : "<f4",
      "', 'fortran_order': False, 'shape': ", ShapeString(shape), ", }");
  // Pad with spaces so the data starts on a 64-byte boundary; end in '\n'.
  size_t total = kMagicSize + 4 + dict.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict.push_back('\n');
  std::string header(kMagic, kMagicSize);
  header.push_back('\x01');
  header.push_back('\x00');
  header.push_back(static_cast<char>(dict.size() & 0xff));
  header.push_back(static_cast<char>(dict.size() >> 8));
  header += dict;
  if (std::fwrite(header.data(), 1, header.size(), w->file_) != header.size()) {
    return internal::ErrnoError(errno, path, "write");
  }
  return w;
}

NpyWriter::~NpyWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status NpyWriter::Append(std::span<const float> values) {
  if (written_ + values.size() > expected_) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": more values than the shape holds"));
  }
  size_t n = 0;
  if (dtype_ == NpyDType::kFloat32) {
    n = std::fwrite(values.data(), sizeof(float), values.size(), file_);
  } else {
    scratch_.resize(values.size());
    scoring::ConvertFromFloat(values, scoring::DType::kFloat16,
                              scratch_.data());
    n = std::fwrite(scratch_.data(), sizeof(uint16_t), values.size(), file_);
  }
  if (n != values.size()) return internal::ErrnoError(errno, path_, "write");
  written_ += values.size();
  return absl::OkStatus();
}

absl::Status NpyWriter::Finish() {
  if (written_ != expected_) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": wrote ", written_, " values, shape holds ", expected_));
  }
  if (std::fflush(file_) != 0)
    return internal::ErrnoError(errno, path_, "write");
  if (::fsync(fileno(file_)) != 0) {
    return internal::ErrnoError(errno, path_, "fsync");
  }
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) return internal::ErrnoError(errno, path_, "close");
  return absl::OkStatus();
}

}  // namespace embsum::store
