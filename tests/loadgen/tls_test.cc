#include "loadgen/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/loadgen/test_files.h"

namespace embsum::loadgen {
namespace {

using ::testing::HasSubstr;

TEST(Tls, PlaintextByDefault) {
  auto client = MakeChannelCredentials({});
  ASSERT_TRUE(client.ok());
  EXPECT_NE(*client, nullptr);
  auto server = MakeServerCredentials({});
  ASSERT_TRUE(server.ok());
  EXPECT_NE(*server, nullptr);
}

TEST(Tls, ErrorsNameTheFlagAndFile) {
  TempDir dir;
  TlsClientOptions client;
  client.enabled = true;
  client.ca_cert = dir.path() + "/absent.pem";
  EXPECT_THAT(MakeChannelCredentials(client).status().message(),
              HasSubstr("--tls_ca_cert: cannot read '" + client.ca_cert + "'"));
  client.ca_cert = dir.Write("junk.pem", "not a certificate");
  EXPECT_THAT(MakeChannelCredentials(client).status().message(),
              HasSubstr("is not a PEM file"));
  client.ca_cert.clear();
  client.cert = dir.Write("c.pem", "-----BEGIN CERTIFICATE-----\n");
  EXPECT_THAT(MakeChannelCredentials(client).status().message(),
              HasSubstr("--tls_cert and --tls_key go together"));

  TlsServerOptions server;
  server.cert = client.cert;
  EXPECT_THAT(MakeServerCredentials(server).status().message(),
              HasSubstr("--tls_cert and --tls_key go together"));
  server.cert.clear();
  server.client_ca = client.cert;
  EXPECT_THAT(MakeServerCredentials(server).status().message(),
              HasSubstr("--tls_client_ca needs --tls_cert"));
  server.cert = client.cert;
  server.key = dir.path() + "/nokey.pem";
  EXPECT_THAT(MakeServerCredentials(server).status().message(),
              HasSubstr("--tls_key: cannot read"));
}

}  // namespace
}  // namespace embsum::loadgen
