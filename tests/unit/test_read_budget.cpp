// The crawl budget: its byte limit scales with the guest's RAM, within bounds,
// and once spent, every later read of the crawl is refused until the next one begins.
#include <gtest/gtest.h>

#include "memory/read_budget.h"

namespace nfm {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(ReadBudget, TheDefaultIsTwiceTheGuestsRamBetween512MiBAnd4GiB) {
  EXPECT_EQ(crawl_bytes_for(0, 256 * kMiB), 512 * kMiB);
  EXPECT_EQ(crawl_bytes_for(0, 1536 * kMiB), 3072 * kMiB);
  EXPECT_EQ(crawl_bytes_for(0, 2048 * kMiB), 4096 * kMiB);
  EXPECT_EQ(crawl_bytes_for(0, 16384 * kMiB), 4096 * kMiB);
  EXPECT_EQ(crawl_bytes_for(0, UINT64_MAX), 4096 * kMiB);          // no overflow
  EXPECT_EQ(crawl_bytes_for(64 * kMiB, 16384 * kMiB), 64 * kMiB);  // an explicit limit wins
}

TEST(ReadBudget, OnceSpentEveryReadOfTheCrawlIsRefused) {
  ReadBudget budget;
  budget.begin({.max_bytes = 4 * kMiB, .max_time = std::chrono::hours(1)}, 1000);
  EXPECT_TRUE(budget.allows(1000 + 4 * kMiB));
  EXPECT_FALSE(budget.allows(1000 + 4 * kMiB + 1));
  EXPECT_TRUE(budget.spent());
  EXPECT_NE(budget.reason().find("read more than 4 MiB"), std::string::npos) << budget.reason();
  EXPECT_FALSE(budget.allows(0));  // still spent, whatever the count says
  budget.end();
  EXPECT_TRUE(budget.allows(UINT64_MAX));  // outside a crawl nothing is charged
  budget.begin({.max_bytes = 4 * kMiB, .max_time = std::chrono::hours(1)}, 0);
  EXPECT_FALSE(budget.spent());
}

TEST(ReadBudget, TheClockSpendsItToo) {
  ReadBudget budget;
  budget.begin({.max_bytes = UINT64_MAX, .max_time = std::chrono::nanoseconds(1)}, 0);
  bool refused = false;
  for (int i = 0; i < 1024 && !refused; ++i) refused = !budget.allows(0);
  EXPECT_TRUE(refused);
  EXPECT_NE(budget.reason().find("ran longer than"), std::string::npos) << budget.reason();
}

}  // namespace
}  // namespace nfm
