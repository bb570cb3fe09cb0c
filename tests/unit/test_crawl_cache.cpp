// The per-crawl page cache: same bytes as the source, each page fetched once per
// crawl, misses of a batch fetched in one batched call, fresh data after
// begin_crawl(), bounded memory, and the source's errors passed through.
#include <gtest/gtest.h>

#include <numeric>

#include "fake_memory.h"
#include "memory/crawl_cache.h"

namespace nfm {
namespace {

using testing::FakeMemory;
constexpr size_t kPage = CrawlCache::kPageSize;

// A fake source that batches like process_vm_readv: one "syscall" per read_many().
class BatchingMemory : public FakeMemory {
 public:
  using FakeMemory::FakeMemory;
  size_t read_many(std::span<ReadOp> ops) override {
    ++batches;
    const uint64_t syscalls = stats_.syscalls;
    size_t done = FakeMemory::read_many(ops);
    stats_.syscalls = syscalls + 1;
    return done;
  }
  int batches = 0;
};

struct Fixture {
  explicit Fixture(size_t max_pages = 64, std::vector<PhysRange> ranges = {{0, 64 * kPage}}) {
    auto m = std::make_unique<BatchingMemory>(std::move(ranges));
    source = m.get();
    for (uint64_t pa = 0; pa < 64 * kPage; pa += 8)
      if (m->contains(pa, 8)) m->write_u64(pa, pa * 3 + 1);
    cache = std::make_unique<CrawlCache>(std::move(m), max_pages);
  }
  uint64_t word(uint64_t pa) {
    uint64_t v = 0;
    EXPECT_TRUE(cache->read(pa, &v, 8).ok()) << pa;
    return v;
  }
  BatchingMemory* source;
  std::unique_ptr<CrawlCache> cache;
};

TEST(CrawlCache, ReadsTheSameBytesAsTheSourceAcrossPageBoundaries) {
  Fixture f;
  std::vector<uint8_t> want(3 * kPage - 100), got(want.size());
  ASSERT_TRUE(f.source->read(kPage + 50, want.data(), want.size()).ok());
  // Small pieces, so they go through the cache (large reads bypass it).
  for (size_t off = 0; off < got.size(); off += 1000)
    ASSERT_TRUE(f.cache->read(kPage + 50 + off, got.data() + off,
                              std::min<size_t>(1000, got.size() - off))
                    .ok());
  EXPECT_EQ(got, want);
}

TEST(CrawlCache, FetchesEachPageOncePerCrawl) {
  Fixture f;
  const uint64_t before = f.source->stats().syscalls;
  for (int round = 0; round < 3; ++round)
    for (uint64_t pa = 2 * kPage; pa < 4 * kPage; pa += 64) EXPECT_EQ(f.word(pa), pa * 3 + 1);
  EXPECT_EQ(f.source->stats().syscalls - before, 2u);  // two pages, each once
  EXPECT_EQ(f.cache->stats().syscalls, f.source->stats().syscalls);
  EXPECT_GT(f.cache->stats().cache_hits, 100u);
}

TEST(CrawlCache, BeginCrawlShowsTheGuestAsItIsNow) {
  Fixture f;
  EXPECT_EQ(f.word(5 * kPage), 5 * kPage * 3 + 1);
  f.source->write_u64(5 * kPage, 42);
  EXPECT_EQ(f.word(5 * kPage), 5 * kPage * 3 + 1);  // same crawl: the page as first read
  f.cache->begin_crawl();
  EXPECT_EQ(f.word(5 * kPage), 42u);
}

TEST(CrawlCache, StaysWithinItsBoundAndStaysCorrectWhenFull) {
  Fixture f(/*max_pages=*/4);
  for (int round = 0; round < 2; ++round)
    for (uint64_t page = 0; page < 20; ++page) EXPECT_EQ(f.word(page * kPage + 8), page * kPage * 3 + 25);
}

TEST(CrawlCache, FetchesTheMissesOfABatchInOneCall) {
  Fixture f;
  EXPECT_EQ(f.word(0), 1u);  // page 0 cached
  uint64_t values[6] = {};
  std::vector<ReadOp> ops;
  for (int i = 0; i < 6; ++i) ops.push_back({uint64_t(i) * kPage + 16, &values[i], 8});
  const uint64_t before = f.source->stats().syscalls;
  EXPECT_EQ(f.cache->read_many(ops), 6u);
  EXPECT_EQ(f.source->stats().syscalls - before, 1u);  // pages 1-5 in one batch
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(ops[i].ok);
    EXPECT_EQ(values[i], (uint64_t(i) * kPage + 16) * 3 + 1);
  }
}

TEST(CrawlCache, FetchesTheMissingPagesOfOneLongReadInOneCall) {
  Fixture f;
  EXPECT_EQ(f.word(kPage), kPage * 3 + 1);  // page 1 cached
  // Pages 0-3 (a task_struct-sized read): 0, 2 and 3 are missing.
  std::vector<uint64_t> words(4 * kPage / 8 - 4);
  const uint64_t before = f.source->stats().syscalls;
  ASSERT_TRUE(f.cache->read(16, words.data(), words.size() * 8).ok());
  EXPECT_EQ(f.source->stats().syscalls - before, 1u);
  for (size_t i = 0; i < words.size(); i += 97) EXPECT_EQ(words[i], (16 + i * 8) * 3 + 1) << i;
  // All four are cached now.
  const uint64_t after = f.source->stats().syscalls;
  ASSERT_TRUE(f.cache->read(16, words.data(), words.size() * 8).ok());
  EXPECT_EQ(f.source->stats().syscalls, after);
}

TEST(CrawlCache, PassesTheSourcesErrorsThrough) {
  // Backed: [0, 8 pages) and [10 pages, 12 pages) minus nothing; page 8-9 is a hole.
  Fixture f(64, {{0, 8 * kPage}, {10 * kPage, 2 * kPage}});
  uint64_t v = 0;
  auto r = f.cache->read(8 * kPage + 16, &v, 8);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::fault);
  EXPECT_EQ(r.error().address.value_or(0), 8 * kPage + 16);
  // A read running off the end of a range fails as the source says; inside works.
  char buf[32];
  EXPECT_FALSE(f.cache->read(8 * kPage - 16, buf, 32).ok());
  EXPECT_TRUE(f.cache->read(8 * kPage - 16, buf, 16).ok());
  EXPECT_EQ(f.word(10 * kPage), 10 * kPage * 3 + 1);
  // In a batch, only the failing op fails.
  uint64_t a = 0, b = 0;
  std::vector<ReadOp> ops = {{kPage, &a, 8}, {9 * kPage, &b, 8}};
  EXPECT_EQ(f.cache->read_many(ops), 1u);
  EXPECT_TRUE(ops[0].ok);
  EXPECT_FALSE(ops[1].ok);
}

TEST(CrawlCache, LargeReadsGoStraightToTheSource) {
  Fixture f;
  std::vector<uint8_t> big(8 * kPage);
  const uint64_t before = f.source->stats().syscalls;
  ASSERT_TRUE(f.cache->read(0, big.data(), big.size()).ok());
  EXPECT_EQ(f.source->stats().syscalls - before, 1u);
  uint64_t first = 0;
  std::memcpy(&first, big.data() + kPage, 8);
  EXPECT_EQ(first, kPage * 3 + 1);
}

}  // namespace
}  // namespace nfm
