// x86-64 page-table walks over synthetic tables in fake memory.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/x86_64_paging.h"
#include "fake_memory.h"

namespace nfm {
namespace {

using testing::FakeMemory;
using testing::FakePageTables;
using x86_64::is_canonical;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kKernelText = 0xffffffff81000000ull;
constexpr uint64_t kUser = 0x00007f0000001000ull;

struct Fixture {
  explicit Fixture(int levels, bool zero_copy = false)
      : mem(64 * kMiB, zero_copy), pt(mem, levels, 32 * kMiB), as(mem, pt.root(), levels) {}
  FakeMemory mem;
  FakePageTables pt;
  X86_64AddressSpace as;
};

TEST(Paging, Canonical) {
  EXPECT_TRUE(is_canonical(0, 4));
  EXPECT_TRUE(is_canonical(0x00007fffffffffffull, 4));
  EXPECT_FALSE(is_canonical(0x0000800000000000ull, 4));
  EXPECT_TRUE(is_canonical(0xffff800000000000ull, 4));
  EXPECT_FALSE(is_canonical(0xff00800000000000ull, 4));
  EXPECT_TRUE(is_canonical(0x00ffffffffffffffull, 5));
  EXPECT_TRUE(is_canonical(0xff00000000000000ull, 5));
  EXPECT_FALSE(is_canonical(0x0100000000000000ull, 5));
}

class PagingLevels : public ::testing::TestWithParam<int> {};

TEST_P(PagingLevels, FourKilobytePages) {
  Fixture f(GetParam());
  f.pt.map(kKernelText, 0x123000);
  f.pt.map(kUser, 0x456000, 4096, FakePageTables::kP | FakePageTables::kUS | FakePageTables::kNX);
  f.mem.write_str(0x123010, "kernel text");
  f.mem.write_str(0x456ff0, "user");

  auto pa = f.as.translate(kKernelText + 0x10);
  ASSERT_TRUE(pa) << pa.error().to_string();
  EXPECT_EQ(*pa, 0x123010u);
  char buf[12] = {};
  ASSERT_TRUE(f.as.read(kKernelText + 0x10, buf, 11));
  EXPECT_STREQ(buf, "kernel text");

  auto m = f.as.walk(kUser + 0xff0);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->va, kUser);
  EXPECT_EQ(m->pa, 0x456000u);
  EXPECT_EQ(m->size, 4096u);
  EXPECT_TRUE(m->user());
  EXPECT_FALSE(m->writable());
  EXPECT_FALSE(m->executable());
}

TEST_P(PagingLevels, LargePages) {
  Fixture f(GetParam());
  const uint64_t va2m = 0xffffc90000000000ull;  // 2 MiB aligned
  const uint64_t va1g = 0xffff888000000000ull;  // 1 GiB aligned
  f.pt.map(va2m, 0x400000, 2 * kMiB);
  f.pt.map(va1g, 0, kGiB);
  f.mem.write_u64(0x400000 + 0x1ff008, 0x1122334455667788ull);
  f.mem.write_u64(0x2345678, 0xabcdefull);

  EXPECT_EQ(*f.as.translate(va2m + 0x1ff008), 0x400000u + 0x1ff008);
  EXPECT_EQ(*f.as.read_value<uint64_t>(va2m + 0x1ff008), 0x1122334455667788ull);
  EXPECT_EQ(*f.as.translate(va1g + 0x2345678), 0x2345678u);
  EXPECT_EQ(*f.as.read_value<uint64_t>(va1g + 0x2345678), 0xabcdefull);
  auto m = f.as.walk(va1g + 0x2345678);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->size, kGiB);
  EXPECT_EQ(m->va, va1g);
}

TEST_P(PagingLevels, LargePageIgnoresPatAndHighBits) {
  Fixture f(GetParam());
  const uint64_t va = 0xffffc90000200000ull;
  f.pt.map(va, 0x600000, 2 * kMiB);
  // Set PAT (bit 12), software bits 52-62 and NX: none are address bits.
  const uint64_t e = f.pt.entry(va, 2);
  f.pt.set_entry(va, 2, e | (1ull << 12) | (0x7ffull << 52) | (1ull << 63));
  EXPECT_EQ(*f.as.translate(va + 5), 0x600005u);
}

TEST_P(PagingLevels, NonPresentAtEachLevel) {
  const int levels = GetParam();
  for (int level = 1; level <= levels; ++level) {
    Fixture f(levels);
    f.pt.map(kKernelText, 0x123000);
    ASSERT_TRUE(f.as.translate(kKernelText));
    f.pt.set_entry(kKernelText, level, f.pt.entry(kKernelText, level) & ~1ull);
    f.as.flush();
    auto r = f.as.translate(kKernelText + 8);
    ASSERT_FALSE(r) << "level " << level;
    EXPECT_EQ(r.error().code, Errc::fault);
    EXPECT_EQ(r.error().address, kKernelText + 8);
  }
}

TEST_P(PagingLevels, NonCanonicalFaults) {
  Fixture f(GetParam());
  const uint64_t bad = GetParam() == 5 ? 0x0100000000000000ull : 0x0000800000000000ull;
  auto r = f.as.translate(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::fault);
  EXPECT_EQ(r.error().address, bad);
  uint8_t b;
  EXPECT_FALSE(f.as.read(bad, &b, 1));
}

TEST_P(PagingLevels, ReadAcrossPagesAndIntoHole) {
  Fixture f(GetParam());
  // Two virtually adjacent pages, physically apart, then an unmapped page.
  f.pt.map(kKernelText, 0x200000);
  f.pt.map(kKernelText + 0x1000, 0x100000);
  f.mem.fill(0x200ffc, 'a', 4);
  f.mem.fill(0x100000, 'b', 4);
  char buf[8];
  ASSERT_TRUE(f.as.read(kKernelText + 0xffc, buf, 8));
  EXPECT_EQ(std::string(buf, 8), "aaaabbbb");

  std::vector<uint8_t> big(size_t{3} * 4096);
  auto r = f.as.read(kKernelText + 0x800, big.data(), size_t{2} * 4096);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::fault);
  EXPECT_EQ(r.error().address, kKernelText + 0x2000);  // the first unmapped byte
}

TEST_P(PagingLevels, PhysicallyContiguousPagesAreOneRead) {
  Fixture f(GetParam());
  for (int i = 0; i < 4; ++i)
    f.pt.map(kKernelText + uint64_t{4096} * i, 0x300000 + uint64_t{4096} * i);
  for (int i = 0; i < 4; ++i) f.mem.fill(0x300000 + i * 4096, 'a' + i, 4096);
  std::vector<char> buf(4 * 4096 - 100);
  f.as.flush();
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(f.as.translate(kKernelText + uint64_t{4096} * i));  // warm the cache
  const uint64_t before = f.mem.read_count();
  ASSERT_TRUE(f.as.read(kKernelText + 50, buf.data(), buf.size()));
  EXPECT_EQ(f.mem.read_count() - before, 1u);
  EXPECT_EQ(buf[0], 'a');
  EXPECT_EQ(buf[4096], 'b');
  EXPECT_EQ(buf.back(), 'd');
}

TEST_P(PagingLevels, DirectMap) {
  Fixture f(GetParam());
  const uint64_t pob = GetParam() == 5 ? 0xff11000000000000ull : 0xffff888000000000ull;
  f.as.set_direct_map(pob, 64 * kMiB);
  f.mem.write_str(0x1234567, "direct");
  char buf[7] = {};
  ASSERT_TRUE(f.as.read(pob + 0x1234567, buf, 6));
  EXPECT_STREQ(buf, "direct");
  EXPECT_EQ(*f.as.translate(pob + 0x1234567), 0x1234567u);
  EXPECT_EQ(f.as.stats().walks, 0u);
  EXPECT_GE(f.as.stats().direct_map_hits, 2u);
  // Beyond the direct map's size: a walk, which faults (nothing mapped there).
  auto r = f.as.translate(pob + 64 * kMiB);
  ASSERT_FALSE(r);
  EXPECT_EQ(f.as.stats().walks, 1u);
  // A direct-map read past physical memory reports the virtual address.
  f.as.set_direct_map(pob, 128 * kMiB);
  uint64_t v;
  auto r2 = f.as.read(pob + 64 * kMiB, &v, 8);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().address, pob + 64 * kMiB);
}

TEST_P(PagingLevels, CacheAndFlush) {
  Fixture f(GetParam());
  f.pt.map(kKernelText, 0x123000);
  ASSERT_EQ(*f.as.translate(kKernelText), 0x123000u);
  ASSERT_EQ(*f.as.translate(kKernelText + 8), 0x123008u);
  EXPECT_EQ(f.as.stats().walks, 1u);
  EXPECT_EQ(f.as.stats().cache_hits, 1u);
  // The guest remaps the page: the cache is stale until flushed.
  f.pt.map(kKernelText, 0x777000);
  EXPECT_EQ(*f.as.translate(kKernelText), 0x123000u);
  f.as.flush();
  EXPECT_EQ(*f.as.translate(kKernelText), 0x777000u);
  EXPECT_EQ(f.as.stats().walks, 2u);
  // Unmapped after flush: faults, not a stale hit.
  f.pt.set_entry(kKernelText, 1, 0);
  f.as.flush();
  EXPECT_FALSE(f.as.translate(kKernelText));
}

TEST_P(PagingLevels, ProtNoneIsReadLikeLinux) {
  Fixture f(GetParam());
  f.pt.map(kUser, 0x123000, 4096, FakePageTables::kP | FakePageTables::kUS);
  // Linux PROT_NONE: present clear, _PAGE_PROTNONE set, frame bits inverted.
  const uint64_t pfn_bits = 0x123000;
  f.pt.set_entry(kUser, 1, (~pfn_bits & 0x000ffffffffff000ull) | (1 << 8) | 4);
  f.as.flush();
  EXPECT_EQ(*f.as.translate(kUser + 4), 0x123004u);

  X86_64Options strict;
  strict.linux_protnone = false;
  X86_64AddressSpace hw(f.mem, f.pt.root(), GetParam(), strict);
  EXPECT_FALSE(hw.translate(kUser + 4));
}

TEST_P(PagingLevels, RangeIterator) {
  Fixture f(GetParam(), /*zero_copy=*/GetParam() == 5);
  f.pt.map(kUser, 0x10000);
  f.pt.map(kUser + 0x1000, 0x20000);
  f.pt.map(kUser + 0x5000, 0x30000);
  f.pt.map(0x0000000040000000ull, 0x200000, 2 * kMiB);
  f.pt.map(0xffff888000000000ull, 0, kGiB);
  f.pt.map(kKernelText, 0x1000000, 2 * kMiB);
  f.pt.map(kKernelText + 2 * kMiB, 0x5000);

  std::vector<PageMapping> seen;
  auto collect = [&](const PageMapping& m) {
    seen.push_back(m);
    return true;
  };
  ASSERT_TRUE(f.as.for_each_mapping(0, 0, collect));
  ASSERT_EQ(seen.size(), 7u);
  EXPECT_EQ(seen[0].va, 0x40000000u);
  EXPECT_EQ(seen[0].size, 2 * kMiB);
  EXPECT_EQ(seen[1].va, kUser);
  EXPECT_EQ(seen[1].pa, 0x10000u);
  EXPECT_EQ(seen[2].va, kUser + 0x1000);
  EXPECT_EQ(seen[3].va, kUser + 0x5000);
  EXPECT_EQ(seen[4].va, 0xffff888000000000ull);  // sign-extended upper half
  EXPECT_EQ(seen[4].size, kGiB);
  EXPECT_EQ(seen[5].va, kKernelText);
  EXPECT_EQ(seen[6].va, kKernelText + 2 * kMiB);
  EXPECT_EQ(seen[6].pa, 0x5000u);

  // A sub-range: only the user pages in [kUser + 0x1000, kUser + 0x5001).
  seen.clear();
  ASSERT_TRUE(f.as.for_each_mapping(kUser + 0x1000, kUser + 0x5001, collect));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].va, kUser + 0x1000);
  EXPECT_EQ(seen[1].va, kUser + 0x5000);

  // Stop early.
  int count = 0;
  ASSERT_TRUE(f.as.for_each_mapping(0, 0, [&](const PageMapping&) { return ++count < 2; }));
  EXPECT_EQ(count, 2);

  // The iterator reads whole tables: far fewer reads than entries visited.
  EXPECT_GT(f.as.stats().tables_read, 0u);
}

TEST_P(PagingLevels, RangeIteratorBoundedOnHostileTables) {
  Fixture f(GetParam());
  // Every PML4/PML5 slot of the lower half points at the same table, whose
  // entries all point at itself: an endless lattice of tables.
  const uint64_t self = f.pt.root();
  for (int i = 0; i < 512; ++i) f.mem.write_u64(self + uint64_t{8} * i, self | 3);
  X86_64Options o;
  o.max_tables = 1000;
  X86_64AddressSpace as(f.mem, self, GetParam(), o);
  auto r = as.for_each_mapping(0, 0, [](const PageMapping&) { return true; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::limit);
}

TEST_P(PagingLevels, UnreadableTableIsFault) {
  Fixture f(GetParam());
  f.pt.map(kKernelText, 0x123000);
  // Point the PMD entry at a table beyond the end of physical memory.
  f.pt.set_entry(kKernelText, 2, (256 * kMiB) | 3);
  f.as.flush();
  auto r = f.as.translate(kKernelText);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::fault);
  uint64_t skipped = 0;
  std::vector<PageMapping> seen;
  ASSERT_TRUE(f.as.for_each_mapping(
      0, 0,
      [&](const PageMapping& m) {
        seen.push_back(m);
        return true;
      },
      &skipped));
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(skipped, 1u);
}

// A PTE that is not present but not empty holds a swap entry (Linux): counted, not
// visited; an empty one is neither.
TEST_P(PagingLevels, SwapEntriesAreCountedNotVisited) {
  Fixture f(GetParam());
  f.pt.map(kUser, 0x456000, uint64_t{3} * 4096, FakePageTables::kP | FakePageTables::kUS);
  f.pt.set_entry(kUser + 4096, 1, 0x1234ull << 9);  // swap type 0, offset 0x1234 (not present)
  f.pt.set_entry(kUser + 8192, 1, 0);
  f.as.flush();
  uint64_t swapped = 0;
  std::vector<uint64_t> seen;
  ASSERT_TRUE(f.as.for_each_mapping(
      kUser, kUser + uint64_t{3} * 4096,
      [&](const PageMapping& m) {
        seen.push_back(m.va);
        return true;
      },
      nullptr, &swapped));
  EXPECT_EQ(seen, std::vector<uint64_t>{kUser});
  EXPECT_EQ(swapped, 1u);
}

INSTANTIATE_TEST_SUITE_P(Levels, PagingLevels, ::testing::Values(4, 5),
                         [](const auto& info) { return std::to_string(info.param) + "level"; });

}  // namespace
}  // namespace nfm
