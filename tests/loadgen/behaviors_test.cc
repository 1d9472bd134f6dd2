#include "loadgen/behaviors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/loadgen/test_files.h"

namespace embsum::loadgen {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ReadIdFile, ReadsIdsAndToleratesCrlf) {
  TempDir dir;
  auto ids = ReadIdFile(dir.Write("ids.txt", "u1\nu2\r\nuser three\n"));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("u1", "u2", "user three"));
}

TEST(ReadIdFile, ErrorsNameFileLineAndProblem) {
  TempDir dir;
  auto dup = ReadIdFile(dir.Write("dup.txt", "a\nb\na\n"));
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr("dup.txt:3: duplicate id 'a'"));

  auto empty_line = ReadIdFile(dir.Write("e.txt", "a\n\nb\n"));
  EXPECT_THAT(empty_line.status().message(), HasSubstr("e.txt:2: empty id"));

  auto control = ReadIdFile(dir.Write("c.txt", "a\tb\n"));
  EXPECT_THAT(control.status().message(), HasSubstr("c.txt:1: id contains"));

  auto long_id = ReadIdFile(dir.Write("l.txt", std::string(257, 'x') + "\n"));
  EXPECT_THAT(long_id.status().message(), HasSubstr("257 bytes"));

  auto none = ReadIdFile(dir.Write("none.txt", ""));
  EXPECT_THAT(none.status().message(), HasSubstr("no ids"));

  auto missing = ReadIdFile(dir.path() + "/absent.txt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("absent.txt: cannot open"));
}

TEST(ReadBehaviors, ParsesLabeledAndUnlabeledImpressions) {
  TempDir dir;
  const std::string path =
      dir.Write("behaviors.tsv",
                "1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N4-0 N5-0\n"
                "2\tU2\t11/11/2019 9:06:00 AM\t\tN3 N6\n"
                "\n");
  auto imps = ReadBehaviors(path, {});
  ASSERT_TRUE(imps.ok()) << imps.status();
  ASSERT_EQ(imps->size(), 2u);
  EXPECT_EQ((*imps)[0].user_id, "U1");
  EXPECT_THAT((*imps)[0].candidates, ElementsAre("N3", "N4", "N5"));
  EXPECT_THAT((*imps)[0].labels, ElementsAre(1, 0, 0));
  EXPECT_EQ((*imps)[0].line, 1);
  EXPECT_THAT((*imps)[1].candidates, ElementsAre("N3", "N6"));
  EXPECT_TRUE((*imps)[1].labels.empty());

  auto limited = ReadBehaviors(path, {.require_labels = false, .limit = 1});
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 1u);

  // embsum-eval needs labels: line 2 has none.
  auto labeled = ReadBehaviors(path, {.require_labels = true});
  ASSERT_FALSE(labeled.ok());
  EXPECT_THAT(labeled.status().message(),
              HasSubstr("behaviors.tsv:2: 2 of 2 impression entries have no "
                        "-0/-1 label"));
}

TEST(ReadBehaviors, ItemIdsMayContainDashes) {
  auto imp =
      ParseBehaviorsLine("7\tu-1\tt\t\titem-12-1 item-13-0", "f:1", true);
  ASSERT_TRUE(imp.ok()) << imp.status();
  EXPECT_THAT(imp->candidates, ElementsAre("item-12", "item-13"));
  EXPECT_THAT(imp->labels, ElementsAre(1, 0));
}

TEST(ReadBehaviors, RejectsMalformedLinesWithLineNumbers) {
  EXPECT_THAT(
      ParseBehaviorsLine("1\tU1\tt\th", "f:4", false).status().message(),
      HasSubstr("f:4: expected 5 tab-separated columns"));
  EXPECT_THAT(
      ParseBehaviorsLine("1\t\tt\th\tN1-1", "f:5", false).status().message(),
      HasSubstr("f:5: empty user id"));
  EXPECT_THAT(
      ParseBehaviorsLine("1\tU\tt\th\t  ", "f:6", false).status().message(),
      HasSubstr("f:6: empty impression list"));
  EXPECT_THAT(ParseBehaviorsLine("1\tU\tt\th\tN1-1 N2", "f:7", false)
                  .status()
                  .message(),
              HasSubstr("f:7: 1 of 2 impression entries have no -0/-1 label"));
  EXPECT_THAT(
      ParseBehaviorsLine("1\tU\tt\th\tN1-2", "f:8", true).status().message(),
      HasSubstr("f:8: impression entry 1 'N1-2': label must be 0 or 1"));
  EXPECT_THAT(
      ParseBehaviorsLine("1\tU\tt\th\t-1", "f:9", true).status().message(),
      HasSubstr("empty item id"));
  TempDir dir;
  EXPECT_THAT(
      ReadBehaviors(dir.Write("empty.tsv", "\n\n"), {}).status().message(),
      HasSubstr("no impressions"));
}

}  // namespace
}  // namespace embsum::loadgen
