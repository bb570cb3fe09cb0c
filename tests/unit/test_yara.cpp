// libyara through YaraRules and YaraScanner: rules from sources (cached compiled by
// content), from a compiled file and from a directory; compile errors with file and
// line; blocks scanned as one object, a string found inside a block and never across
// two (the scanner relies on blocks being whole runs of pages).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "features/scan/yara_rules.h"

namespace nfm {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  TempDir() {
    char t[] = "/tmp/nfm-yara-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path + "/" + name) << text;
    return path + "/" + name;
  }
  std::string path;
};

TEST(YaraRules, CompileErrorsNameFileAndLine) {
  TempDir d;
  const std::string f =
      d.write("bad.yar", "rule a { condition: true }\nrule b { condition: $x }\n");
  auto r = YaraRules::load(f, "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_THAT(r.error().message, testing::StartsWith("rules do not compile: " + f + ":2: "));
  auto missing = YaraRules::load(d.path + "/none.yar", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "no such rules file or directory: " + d.path + "/none.yar");
}

TEST(YaraRules, SourcesAreCachedByContentAndADirectoryIsOneSet) {
  TempDir d, cache;
  d.write("one.yar", "rule same { strings: $a = \"alpha\" condition: $a }\n");
  d.write("two.yara", "rule same { strings: $b = \"beta\" condition: $b }\n");
  d.write("notes.txt", "not rules");
  auto first = YaraRules::load(d.path, cache.path);
  ASSERT_TRUE(first) << first.error().to_string();
  // Two files, each its own namespace: the same rule name twice is fine.
  EXPECT_EQ((*first)->rule_count(), 2u);
  EXPECT_EQ((*first)->description(), "2 rules from 2 files");
  auto again = YaraRules::load(d.path, cache.path);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->description(), "2 rules from 2 files (cached)");
  // Changed text: compiled again, not served from the cache.
  d.write("two.yara", "rule other { strings: $b = \"gamma\" condition: $b }\n");
  auto changed = YaraRules::load(d.path, cache.path);
  ASSERT_TRUE(changed);
  EXPECT_EQ((*changed)->description(), "2 rules from 2 files");
}

// A file compiled by yarac (the yara package, installed with the build dependencies)
// is loaded as it is; a file that only starts like one is refused.
TEST(YaraRules, ACompiledRulesFileIsLoaded) {
  TempDir d;
  const std::string src = d.write("r.yar",
                                  "rule a { strings: $a = \"x1\" condition: $a }\n"
                                  "rule b { condition: false }\n");
  const std::string compiled = d.path + "/r.yarc";
  ASSERT_EQ(std::system(("yarac " + src + " " + compiled).c_str()), 0) << "yarac failed";
  auto r = YaraRules::load(compiled, "");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ((*r)->rule_count(), 2u);
  EXPECT_EQ((*r)->description(), "2 rules (compiled file)");
  const std::string fake = d.write("fake.yarc", std::string("YARA") + std::string(60, '\0'));
  auto bad = YaraRules::load(fake, "");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, fake + ": not a compiled rules file of this libyara (4.2)");
}

TEST(YaraScanner, MatchesInsideBlocksNeverAcrossThem) {
  TempDir d;
  auto rules = YaraRules::load(
      d.write("r.yar",
              "rule needle : t1 t2 { meta: n = 7 strings: $n = \"NEEDLE\" condition: $n }\n"
              "rule both { strings: $x = \"XX1\" $y = \"YY2\" condition: $x and $y }\n"),
      "");
  ASSERT_TRUE(rules) << rules.error().to_string();
  YaraScanner scanner(*rules);
  // Block 0 at 0x1000 has NEEDLE at offset 10 and XX1; block 1 at 0x9000 has YY2; the
  // split "NEE" | "DLE" across blocks 1 and 2 must not match.
  std::string b0(64, '.'), b1(64, '.'), b2(64, '.');
  b0.replace(10, 6, "NEEDLE");
  b0.replace(30, 3, "XX1");
  b1.replace(5, 3, "YY2");
  b1.replace(61, 3, "NEE");
  b2.replace(0, 3, "DLE");
  const std::string* data[] = {&b0, &b1, &b2};
  const YaraBlock blocks[] = {{0x1000, 64}, {0x9000, 64}, {0x9040, 64}};
  auto r = scanner.scan(
      blocks, [&](size_t i) { return reinterpret_cast<const uint8_t*>(data[i]->data()); });
  ASSERT_TRUE(r) << r.error().to_string();
  std::vector<std::string> got;
  for (const YaraMatch& m : *r)
    got.push_back(fmt::format("{} {} 0x{:x}", m.rule, m.string_id, *m.address));
  EXPECT_THAT(
      got, testing::UnorderedElementsAre("needle $n 0x100a", "both $x 0x101e", "both $y 0x9005"));
  for (const YaraMatch& m : *r)
    if (m.rule == "needle") {
      EXPECT_EQ(m.tags, (std::vector<std::string>{"t1", "t2"}));
      EXPECT_EQ(m.meta.at("n"), "7");
    }
  // A block fetch that fails (nullptr) is skipped, not an error.
  auto skipped = scanner.scan(blocks, [&](size_t i) -> const uint8_t* {
    return i == 0 ? nullptr : reinterpret_cast<const uint8_t*>(data[i]->data());
  });
  ASSERT_TRUE(skipped);
  EXPECT_TRUE(skipped->empty());
}

}  // namespace
}  // namespace nfm
