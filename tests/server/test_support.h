// Shared helpers of the server tests: a small synthetic model ingested into
// a temporary data directory, its vectors read back from the artifact for
// the float64 reference, temporary directories and test certificates.
// Thread-compatible.
#ifndef EMBSUM_TESTS_SERVER_TEST_SUPPORT_H_
#define EMBSUM_TESTS_SERVER_TEST_SUPPORT_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "datagen/synthetic_model.h"
#include "scoring/reference.h"

namespace embsum::testing {

// A fresh directory under the test's temporary directory.
std::string MakeTempDir(const std::string& prefix);

// A float32 .npy array (C order), read whole.
struct NpyF32 {
  std::vector<uint64_t> shape;
  std::vector<float> data;
  // Row r of the first axis.
  std::span<const float> row(uint64_t r) const {
    const size_t n = data.size() / shape[0];
    return std::span<const float>(data).subspan(r * n, n);
  }
};
absl::Status ReadNpyF32(const std::string& path, NpyF32* out);

// A synthetic model artifact (datagen::GenerateSyntheticModel) ingested into a
// data directory (store::Ingest), with its ids and vectors.
struct TestModel {
  datagen::SyntheticModelOptions options;
  std::string model_dir;
  std::string data_dir;
  std::vector<std::string> user_ids;
  std::vector<std::string> item_ids;
  NpyF32 upe, queries, cpe, keys;  // queries/keys empty when absent

  // The float64 reference of docs/design.md section 2 for user u, item i
  // (indices into user_ids / item_ids).
  scoring::ReferenceResult Reference(size_t u, size_t i) const;
};

// Small shapes by default so tests are fast.
datagen::SyntheticModelOptions SmallModelOptions();
absl::Status BuildTestModel(const std::string& root,
                            const datagen::SyntheticModelOptions& options,
                            TestModel* out);

// The reference on fp32 vectors (q or g empty: Q = A, G = B).
scoring::ReferenceResult ReferenceOf(uint32_t m, uint32_t n, uint32_t d,
                                     std::span<const float> a,
                                     std::span<const float> q,
                                     std::span<const float> b,
                                     std::span<const float> g);

// PEM files made with openssl: a CA, a server certificate for localhost /
// 127.0.0.1 signed by it, a client certificate signed by it, and a second,
// unrelated CA with its own client certificate.
struct TestCerts {
  std::string ca_cert;
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string other_ca_cert;
  std::string other_client_cert, other_client_key;
};
absl::Status MakeTestCerts(const std::string& dir, TestCerts* out);

// Reads a whole file ("" when unreadable).
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace embsum::testing

#endif  // EMBSUM_TESTS_SERVER_TEST_SUPPORT_H_
