#include "tests/server/test_support.h"

#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "store/data_dir.h"

namespace embsum::testing {

std::string MakeTempDir(const std::string& prefix) {
  std::string pattern = ::testing::TempDir();
  if (pattern.empty() || pattern.back() != '/') pattern += '/';
  pattern += prefix + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "mkdtemp %s failed\n", pattern.c_str());
    std::abort();
  }
  return pattern;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status ReadNpyF32(const std::string& path, NpyF32* out) {
  const std::string bytes = ReadFileOrEmpty(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    return absl::DataLossError(path + ": not a .npy file");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) |
                 (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else {
    uint32_t len = 0;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    offset = 12;
  }
  const std::string header = bytes.substr(offset, header_len);
  if (header.find("'<f4'") == std::string::npos) {
    return absl::DataLossError(path + ": not '<f4': " + header);
  }
  const size_t open = header.find("'shape': (");
  const size_t close = header.find(')', open);
  out->shape.clear();
  for (absl::string_view dim :
       absl::StrSplit(header.substr(open + 10, close - open - 10), ',',
                      absl::SkipWhitespace())) {
    out->shape.push_back(std::stoull(std::string(dim)));
  }
  size_t count = 1;
  for (uint64_t d : out->shape) count *= d;
  const size_t data_offset = offset + header_len;
  if (bytes.size() != data_offset + count * 4) {
    return absl::DataLossError(path + ": size does not match the shape");
  }
  out->data.resize(count);
  std::memcpy(out->data.data(), bytes.data() + data_offset, count * 4);
  return absl::OkStatus();
}

datagen::SyntheticModelOptions SmallModelOptions() {
  datagen::SyntheticModelOptions o;
  o.users = 24;
  o.items = 300;
  o.dim = 16;
  o.user_codes = 4;
  o.item_codes = 3;
  o.topics = 6;
  o.seed = 7;
  o.impressions = 10;
  o.impression_size = 5;
  o.model_version = "test-model-7";
  return o;
}

static std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

absl::Status BuildTestModel(const std::string& root,
                            const datagen::SyntheticModelOptions& options,
                            TestModel* out) {
  out->options = options;
  out->options.out_dir = root + "/model";
  out->model_dir = out->options.out_dir;
  out->data_dir = root + "/data";
  if (absl::Status s = datagen::GenerateSyntheticModel(out->options); !s.ok()) {
    return s;
  }
  store::IngestOptions ingest;
  ingest.model_dir = out->model_dir;
  ingest.data_dir = out->data_dir;
  if (absl::Status s = store::Ingest(ingest); !s.ok()) return s;
  out->user_ids = ReadLines(out->model_dir + "/users/ids.txt");
  out->item_ids = ReadLines(out->model_dir + "/items/ids.txt");
  if (absl::Status s = ReadNpyF32(out->model_dir + "/users/upe.npy", &out->upe);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadNpyF32(out->model_dir + "/items/cpe.npy", &out->cpe);
      !s.ok()) {
    return s;
  }
  if (options.user_queries) {
    if (absl::Status s =
            ReadNpyF32(out->model_dir + "/users/queries.npy", &out->queries);
        !s.ok()) {
      return s;
    }
  }
  if (options.item_keys) {
    if (absl::Status s =
            ReadNpyF32(out->model_dir + "/items/keys.npy", &out->keys);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

scoring::ReferenceResult ReferenceOf(uint32_t m, uint32_t n, uint32_t d,
                                     std::span<const float> a,
                                     std::span<const float> q,
                                     std::span<const float> b,
                                     std::span<const float> g) {
  auto widen = [](std::span<const float> v) {
    return std::vector<double>(v.begin(), v.end());
  };
  const std::vector<double> a64 = widen(a), q64 = widen(q), b64 = widen(b),
                            g64 = widen(g);
  return scoring::ReferenceScore(m, n, d, a64, q64, b64, g64);
}

scoring::ReferenceResult TestModel::Reference(size_t u, size_t i) const {
  return ReferenceOf(
      options.user_codes, options.item_codes, options.dim, upe.row(u),
      queries.data.empty() ? std::span<const float>() : queries.row(u),
      cpe.row(i), keys.data.empty() ? std::span<const float>() : keys.row(i));
}

absl::Status MakeTestCerts(const std::string& dir, TestCerts* out) {
  const std::string script = absl::StrCat(
      "set -e; cd '", dir, "'\n", "exec >openssl.log 2>&1\n",
      "ca() { openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
      "-subj \"/CN=$1\" -keyout $1.key -out $1.pem; }\n",
      "leaf() { openssl req -newkey rsa:2048 -nodes -subj \"/CN=$2\" "
      "-keyout $1.key -out $1.csr\n",
      "  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n"
      "extendedKeyUsage=serverAuth,clientAuth\\n' > $1.ext\n",
      "  openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key "
      "-CAcreateserial -days 2 -extfile $1.ext -out $1.pem; }\n",
      "ca test-ca\n", "ca other-ca\n", "leaf server localhost test-ca\n",
      "leaf client test-client test-ca\n",
      "leaf other-client other-client other-ca\n");
  const std::string script_path = dir + "/make-certs.sh";
  std::ofstream(script_path) << script;
  if (std::system(("bash '" + script_path + "'").c_str()) != 0) {
    return absl::InternalError("openssl failed: " +
                               ReadFileOrEmpty(dir + "/openssl.log"));
  }
  out->ca_cert = dir + "/test-ca.pem";
  out->server_cert = dir + "/server.pem";
  out->server_key = dir + "/server.key";
  out->client_cert = dir + "/client.pem";
  out->client_key = dir + "/client.key";
  out->other_ca_cert = dir + "/other-ca.pem";
  out->other_client_cert = dir + "/other-client.pem";
  out->other_client_key = dir + "/other-client.key";
  return absl::OkStatus();
}

}  // namespace embsum::testing
