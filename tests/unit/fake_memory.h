// Test doubles for guest-physical memory, reusable by any unit test:
//  - FakeMemory: sparse in-memory PhysicalMemory with declared backed ranges;
//    unwritten bytes of a backed range read as zero.
//  - FakePageTables: builds x86-64 page tables (4- or 5-level, 4K/2M/1G pages)
//    inside a FakeMemory.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory/physical_memory.h"

namespace nfm::testing {

class FakeMemory : public PhysicalMemory {
 public:
  // `zero_copy`: serve view() for written pages (like an mmap'ed source).
  explicit FakeMemory(std::vector<PhysRange> ranges, bool zero_copy = false)
      : ranges_(std::move(ranges)), zero_copy_(zero_copy) {
    std::sort(ranges_.begin(), ranges_.end(),
              [](const PhysRange& a, const PhysRange& b) { return a.start < b.start; });
  }
  // One range [0, size).
  explicit FakeMemory(uint64_t size, bool zero_copy = false)
      : FakeMemory(std::vector<PhysRange>{{0, size}}, zero_copy) {}

  const std::vector<PhysRange>& ranges() const override { return ranges_; }

  Result<void> read(uint64_t pa, void* dst, size_t len) override {
    ++stats_.reads;
    ++stats_.syscalls;
    if (!contains_all(pa, len)) {
      ++stats_.failures;
      return fault_at(pa, "fake memory: not backed");
    }
    auto* out = static_cast<uint8_t*>(dst);
    while (len > 0) {
      const uint64_t off = pa & 4095;
      const size_t chunk = std::min<size_t>(len, 4096 - off);
      auto it = pages_.find(pa - off);
      if (it == pages_.end()) {
        std::memset(out, 0, chunk);
      } else {
        std::memcpy(out, it->second->data() + off, chunk);
      }
      pa += chunk;
      out += chunk;
      len -= chunk;
      stats_.bytes += chunk;
    }
    return {};
  }

  const uint8_t* view(uint64_t pa, size_t len) const override {
    if (!zero_copy_ || len == 0 || (pa & 4095) + len > 4096) return nullptr;
    auto it = pages_.find(pa & ~uint64_t{4095});
    return it == pages_.end() ? nullptr : it->second->data() + (pa & 4095);
  }

  std::string describe() const override { return "fake memory"; }

  // Writes into backed memory (the test sets up guest state).
  void write(uint64_t pa, const void* src, size_t len) {
    const auto* in = static_cast<const uint8_t*>(src);
    while (len > 0) {
      const uint64_t off = pa & 4095;
      const size_t chunk = std::min<size_t>(len, 4096 - off);
      auto& page = pages_[pa - off];
      if (!page) page = std::make_unique<std::array<uint8_t, 4096>>();  // value-initialized: zeros
      std::memcpy(page->data() + off, in, chunk);
      pa += chunk;
      in += chunk;
      len -= chunk;
    }
  }
  void write_u64(uint64_t pa, uint64_t v) { write(pa, &v, sizeof v); }
  void write_str(uint64_t pa, const std::string& s) { write(pa, s.data(), s.size()); }
  void fill(uint64_t pa, uint8_t byte, size_t len) {
    std::vector<uint8_t> b(len, byte);
    write(pa, b.data(), len);
  }

  uint64_t read_count() const { return stats_.reads; }

 private:
  bool contains_all(uint64_t pa, size_t len) const {
    // A read may span adjacent ranges.
    while (len > 0) {
      auto it = std::find_if(ranges_.begin(), ranges_.end(),
                             [&](const PhysRange& r) { return r.contains(pa); });
      if (it == ranges_.end()) return false;
      const uint64_t avail = it->end() - pa;
      if (avail >= len) return true;
      pa += avail;
      len -= avail;
    }
    return true;
  }

  std::vector<PhysRange> ranges_;
  bool zero_copy_;
  std::map<uint64_t, std::unique_ptr<std::array<uint8_t, 4096>>> pages_;
};

// Builds page tables in a FakeMemory. Tables are allocated from `next_table`
// upwards, one 4 KiB page each.
class FakePageTables {
 public:
  static constexpr uint64_t kP = 1, kRW = 2, kUS = 4, kPS = 0x80, kNX = 1ull << 63;

  FakePageTables(FakeMemory& mem, int levels, uint64_t first_table_pa)
      : mem_(mem), levels_(levels), next_(first_table_pa) {
    root_ = alloc();
  }

  uint64_t root() const { return root_; }

  // Maps one page of `size` (4 KiB, 2 MiB, 1 GiB) at `va` -> `pa`.
  void map(uint64_t va, uint64_t pa, uint64_t size = 4096, uint64_t flags = kP | kRW) {
    const int leaf_level = size == (1ull << 30) ? 3 : size == (1ull << 21) ? 2 : 1;
    uint64_t table = root_;
    for (int level = levels_; level > leaf_level; --level) {
      const uint64_t slot = table + index(va, level) * 8;
      uint64_t e = entry_at(slot);
      if (!(e & kP)) {
        e = alloc() | kP | kRW | kUS;
        mem_.write_u64(slot, e);
      }
      table = e & 0x000ffffffffff000ull;
    }
    const uint64_t leaf = pa | flags | (leaf_level > 1 ? kPS : 0);
    mem_.write_u64(table + index(va, leaf_level) * 8, leaf);
  }

  // Address of the entry for `va` at `level` (1 = PTE), walking existing tables.
  uint64_t entry_addr(uint64_t va, int level) {
    uint64_t table = root_;
    for (int l = levels_; l > level; --l)
      table = entry_at(table + index(va, l) * 8) & 0x000ffffffffff000ull;
    return table + index(va, level) * 8;
  }
  void set_entry(uint64_t va, int level, uint64_t value) {
    mem_.write_u64(entry_addr(va, level), value);
  }
  uint64_t entry(uint64_t va, int level) { return entry_at(entry_addr(va, level)); }

 private:
  static uint64_t index(uint64_t va, int level) { return (va >> (12 + 9 * (level - 1))) & 511; }
  uint64_t entry_at(uint64_t pa) {
    uint64_t v = 0;
    (void)mem_.read(pa, &v, 8);
    return v;
  }
  uint64_t alloc() {
    const uint64_t pa = next_;
    next_ += 4096;
    mem_.fill(pa, 0, 4096);
    return pa;
  }

  FakeMemory& mem_;
  int levels_;
  uint64_t next_;
  uint64_t root_;
};

}  // namespace nfm::testing
