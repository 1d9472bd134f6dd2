#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/log.h"
#include "server/ranker_core.h"
#include "server/runtime_info.h"
#include "server/status_util.h"

namespace embsum::server {
namespace {

using ::testing::HasSubstr;

TEST(StatusUtilTest, ScoringToAbslKeepsCodeAndMessage) {
  const absl::Status s =
      ToAbslStatus(scoring::Status::InvalidArgument("rows[3] out of range"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "rows[3] out of range");
  EXPECT_TRUE(ToAbslStatus(scoring::Status::Ok()).ok());
  EXPECT_EQ(ToAbslStatus(scoring::Status::Unavailable("gpu")).code(),
            absl::StatusCode::kUnavailable);
}

TEST(StatusUtilTest, AbslToGrpcKeepsEveryCode) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status s(static_cast<absl::StatusCode>(code),
                         code == 0 ? "" : "why");
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    if (code != 0) {
      EXPECT_EQ(g.error_message(), "why");
    }
  }
}

TEST(StatusUtilTest, CodeNames) {
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED),
            "RESOURCE_EXHAUSTED");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
}

TEST(LogTest, KeyValueWithQuotingWhereNeeded) {
  EXPECT_EQ(FormatLogFields("info", "start",
                            {{"users", "12"},
                             {"message", "two words"},
                             {"quote", "a\"b"},
                             {"empty", ""}}),
            "level=info event=start users=12 message=\"two words\" "
            "quote=\"a\\\"b\" empty=\"\"");
  EXPECT_EQ(FormatLogFields("error", "x", {{"m", "line1\nline2"}}),
            "level=error event=x m=\"line1\\nline2\"");
}

TEST(RuntimeInfoTest, NamesTheBlasCoreAndLimitsItsThreads) {
  const BlasInfo before = GetBlasInfo();
  if (before.core == "none") GTEST_SKIP() << "built without OpenBLAS";
  EXPECT_FALSE(before.config.empty());
  EXPECT_GE(before.threads, 1);
  LimitBlasThreads(1);
  EXPECT_EQ(GetBlasInfo().threads, 1);
  LimitBlasThreads(0);  // leaves it as it is
  EXPECT_EQ(GetBlasInfo().threads, 1);
  LimitBlasThreads(before.threads);
  EXPECT_EQ(GetBlasInfo().threads, before.threads);
}

TEST(ValidateIdTest, AcceptsAndRejects) {
  EXPECT_TRUE(ValidateId("u-1", "user_id").ok());
  EXPECT_TRUE(ValidateId("ünïcødé", "user_id").ok());
  EXPECT_TRUE(ValidateId(std::string(256, 'a'), "user_id").ok());
  EXPECT_EQ(ValidateId("", "user_id").message(), "user_id is empty");
  EXPECT_EQ(ValidateId(std::string(257, 'a'), "item_id").message(),
            "item_id is 257 bytes; the limit is 256");
  EXPECT_EQ(ValidateId(std::string("a\0b", 3), "user_id").message(),
            "user_id has a control character at byte 1");
}

}  // namespace
}  // namespace embsum::server
