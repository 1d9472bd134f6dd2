#include "store/internal/ids.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/manifest.h"

namespace embsum::store {
namespace {

using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(IdsTest, ParsesLinesWithOrWithoutFinalNewline) {
  auto a = ParseIds("a\nb\xc3\xa9\nc\n", "items/ids.txt");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, (std::vector<std::string>{"a", "b\xc3\xa9", "c"}));
  auto b = ParseIds("a\nb", "items/ids.txt");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->size(), 2u);
  auto empty = ParseIds("", "items/ids.txt");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(IdsTest, RejectsBadIdsNamingFileAndLine) {
  struct Case {
    std::string text;
    std::string message;
  } cases[] = {
      {"a\n\nb\n", "items/ids.txt: line 2: empty id"},
      {"a\nb\na\n",
       "items/ids.txt: line 3: duplicate id \"a\" (first on line 1)"},
      {"a\r\n",
       "items/ids.txt: line 1: id \"a\\x0d\" contains control character 0x0d"},
      {"ok\nx\ty\n", "line 2: id \"x\\x09y\" contains control character 0x09"},
      {"\xff\xfe\n", "line 1: id \"\xff\xfe\" is not valid UTF-8"},
      {std::string(257, 'x') + "\n", "line 1: id \"xxxx"},
  };
  for (const auto& c : cases) {
    auto ids = ParseIds(c.text, "items/ids.txt");
    ASSERT_FALSE(ids.ok()) << c.message;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(ids.status()), HasSubstr(c.message));
  }
  EXPECT_THAT(Message(ParseIds(std::string(257, 'x'), "f").status()),
              HasSubstr("is 257 bytes (at most 256)"));
  EXPECT_TRUE(ParseIds(std::string(256, 'x'), "f").ok());
}

TEST(IdsTest, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // cut short
}

TEST(SummariesTest, ParsesAndRejects) {
  auto ok = ParseSummaries(
      "{\"user_id\": \"u1\", \"summary\": \"likes jazz\"}\n\n"
      "{\"summary\": \"\", \"user_id\": \"u2\", \"extra\": 1}\n",
      "users/summaries.jsonl");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].user_id, "u1");
  EXPECT_EQ((*ok)[0].summary, "likes jazz");
  struct Case {
    std::string text;
    std::string message;
  } cases[] = {
      {"{\"user_id\": \"u1\", \"summary\": \"a\"}\nnot json\n",
       "users/summaries.jsonl: line 2: not a JSON object"},
      {"{\"user_id\": 5, \"summary\": \"a\"}\n",
       "line 1: missing string field \"user_id\""},
      {"{\"user_id\": \"u\"}\n", "line 1: missing string field \"summary\""},
      {"{\"user_id\": \"\", \"summary\": \"a\"}\n", "line 1: empty id"},
      {"{\"user_id\": \"u\", \"summary\": \"a\"}\n"
       "{\"user_id\": \"u\", \"summary\": \"b\"}\n",
       "line 2: second summary for user \"u\" (first on line 1)"},
  };
  for (const auto& c : cases) {
    auto s = ParseSummaries(c.text, "users/summaries.jsonl");
    ASSERT_FALSE(s.ok()) << c.message;
    EXPECT_THAT(Message(s.status()), HasSubstr(c.message));
  }
}

TEST(ManifestTest, RoundTrips) {
  ModelManifest m;
  m.model_version = "v7";
  m.dim = 512;
  m.user_codes = 32;
  m.item_codes = 8;
  m.user_queries = true;
  auto parsed = ParseManifest(ManifestToJson(m), "manifest.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->model_version, "v7");
  EXPECT_EQ(parsed->dim, 512u);
  EXPECT_EQ(parsed->user_codes, 32u);
  EXPECT_EQ(parsed->item_codes, 8u);
  EXPECT_TRUE(parsed->user_queries);
  EXPECT_FALSE(parsed->item_keys);
}

TEST(ManifestTest, RejectsBadFieldsByName) {
  const std::string base =
      R"("format_version": 1, "model_version": "v", "user_codes": 2,)"
      R"( "item_codes": 2, "user_queries": false, "item_keys": false)";
  struct Case {
    std::string json;
    std::string message;
  } cases[] = {
      {"{" + base + ", \"dim\": 0}",
       "field \"dim\": must be in [1, 65536], got 0"},
      {"{" + base + ", \"dim\": -4}",
       "field \"dim\": must be in [1, 65536], got -4"},
      {"{" + base + ", \"dim\": 1.5}", "field \"dim\": expected an integer"},
      {"{" + base + "}", "field \"dim\": missing"},
      {R"({"format_version": 2})",
       "field \"format_version\": unsupported version 2"},
      {"[1]", "expected a JSON object"},
      {"{", "not valid JSON"},
      {R"({"format_version": 1, "model_version": "v", "dim": 4, "user_codes": 2,)"
       R"( "item_codes": 2, "user_queries": "yes", "item_keys": false})",
       "field \"user_queries\": expected true or false"},
  };
  for (const auto& c : cases) {
    auto m = ParseManifest(c.json, "model/manifest.json");
    ASSERT_FALSE(m.ok()) << c.json;
    EXPECT_THAT(Message(m.status()), HasSubstr("model/manifest.json: "));
    EXPECT_THAT(Message(m.status()), HasSubstr(c.message)) << m.status();
  }
}

}  // namespace
}  // namespace embsum::store
