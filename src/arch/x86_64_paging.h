// All x86-64 paging knowledge in one place: 4- and 5-level walks, 1 GiB / 2 MiB
// pages, the kernel direct map, a translation cache and a range iterator that
// reads whole 4 KiB tables.
//
// The guest changes under us: nothing here is cached across crawls unless the
// caller decides so. flush() drops every cached translation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "arch/address_space.h"
#include "memory/physical_memory.h"
#include "memory/read_budget.h"

namespace nfm {

namespace x86_64 {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageSize2M = 1ull << 21;
inline constexpr uint64_t kPageSize1G = 1ull << 30;

// Entry bits (Intel SDM vol. 3A §4.5; Linux arch/x86/include/asm/pgtable_types.h).
inline constexpr uint64_t kPresent = 1ull << 0;
inline constexpr uint64_t kWritable = 1ull << 1;
inline constexpr uint64_t kUser = 1ull << 2;
inline constexpr uint64_t kLarge = 1ull << 7;  // PS: leaf at PDPT (1G) / PD (2M)
inline constexpr uint64_t kProtNone = 1ull
                                      << 8;  // Linux _PAGE_PROTNONE (= global bit when present)
inline constexpr uint64_t kNoExec = 1ull << 63;
// Physical address bits 12..51 of an entry; bits 52-62 (software/PKEY) and 63 (NX) are not address.
inline constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;
// For large pages bit 12 is PAT, so the frame mask is narrower.
inline constexpr uint64_t kAddrMask2M = 0x000fffffffe00000ull;
inline constexpr uint64_t kAddrMask1G = 0x000fffffc0000000ull;

// True if `va` is canonical for a `levels`-level (4 or 5) address space:
// bits above 47 (resp. 56) are copies of bit 47 (resp. 56).
inline bool is_canonical(uint64_t va, int levels) {
  const int bits = levels == 5 ? 57 : 48;
  const int64_t s = static_cast<int64_t>(va << (64 - bits)) >> (64 - bits);
  return static_cast<uint64_t>(s) == va;
}

}  // namespace x86_64

// One mapped page (or large page) found by a walk or by for_each_mapping().
struct PageMapping {
  uint64_t va = 0;
  uint64_t pa = 0;
  uint64_t size = 0;   // 4 KiB, 2 MiB or 1 GiB
  uint64_t entry = 0;  // the leaf entry, for flags (x86_64::kWritable, kUser, kNoExec)
  bool writable() const { return entry & x86_64::kWritable; }
  bool user() const { return entry & x86_64::kUser; }
  bool executable() const { return !(entry & x86_64::kNoExec); }
};

struct PagingStats {
  uint64_t walks = 0;            // full page-table walks
  uint64_t cache_hits = 0;       // translations served by the cache
  uint64_t direct_map_hits = 0;  // translations done arithmetically
  uint64_t faults = 0;           // translations that failed
  uint64_t tables_read = 0;      // whole 4 KiB tables read by for_each_mapping()
};

// A non-owning reference to a callable (no allocation, unlike std::function).
template <typename Sig>
class FunctionRef;
template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef>)
      FunctionRef(F&& f)  // NOLINT(google-explicit-constructor)
      : obj_(const_cast<void*>(static_cast<const void*>(&f))), call_([](void* o, Args... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(a)...);
        }) {}
  R operator()(Args... a) const { return call_(obj_, std::forward<Args>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

// Visitor for for_each_mapping(): return false to stop the iteration.
using MappingVisitor = FunctionRef<bool(const PageMapping&)>;

struct X86_64Options {
  // Linux keeps PROT_NONE pages (mprotect, NUMA-balancing hints) as non-present
  // entries with _PAGE_PROTNONE set and the frame number inverted (L1TF
  // mitigation, arch/x86/include/asm/pgtable-invert.h). The data is there;
  // read it like the kernel would (pte_present()).
  bool linux_protnone = true;
  // Bound on tables one for_each_mapping() call may read: a hostile guest can
  // point many entries at the same table (Errc::limit when exceeded).
  uint64_t max_tables = 1u << 20;
};

class X86_64AddressSpace : public AddressSpace {
 public:
  // `dtb_pa`: physical address of the top-level table (CR3 without flag bits).
  // `levels`: 4 or 5 (the caller knows, e.g. from pgtable_l5_enabled).
  X86_64AddressSpace(PhysicalMemory& mem, uint64_t dtb_pa, int levels = 4,
                     X86_64Options options = {});

  // Kernel direct map: VAs in [page_offset_base, page_offset_base + size) are
  // translated as pa = va - page_offset_base, without a walk. `size` is
  // normally the guest's physical end.
  void set_direct_map(uint64_t page_offset_base, uint64_t size);
  void clear_direct_map() { dm_size_ = 0; }
  // Checks `budget` (not owned; nullptr: unbudgeted) before every read(), against
  // the bytes the physical memory has read so far.
  void set_budget(ReadBudget* budget) { budget_ = budget; }

  Result<void> read(uint64_t va, void* dst, size_t len) override;
  Result<uint64_t> translate(uint64_t va) override;

  // Full walk (cache bypassed, not filled): the leaf mapping containing `va`.
  Result<PageMapping> walk(uint64_t va);

  // Visits each mapped page overlapping [va_start, va_end) in address order,
  // reading whole tables per level. Large pages are reported once, with their
  // own (aligned) va. Unreadable tables are skipped and counted in `skipped`
  // if given. Non-canonical parts of the range are skipped. va_end == 0 means
  // "to the top of the address space" (so (0, 0) visits everything).
  // `swap_entries`, if given, counts the 4 KiB pages whose PTE is not present but
  // not empty either: where Linux keeps a swapped-out page's swap entry.
  Result<void> for_each_mapping(uint64_t va_start, uint64_t va_end, MappingVisitor visit,
                                uint64_t* skipped = nullptr, uint64_t* swap_entries = nullptr);

  // Drops all cached translations (call at the start of every crawl).
  void flush() { ++generation_; }

  uint64_t dtb() const { return dtb_; }
  int levels() const { return levels_; }
  PhysicalMemory& memory() { return mem_; }
  const PagingStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 private:
  struct CacheEntry {
    uint64_t vpn = 0;         // va >> 12
    uint64_t pa_page = 0;     // physical address of the 4 KiB page
    uint64_t generation = 0;  // valid only if equal to generation_
  };
  static constexpr size_t kCacheSize = 512;  // direct-mapped, power of two

  Result<uint64_t> translate_page(uint64_t va);  // -> pa of va's 4 KiB page; errors carry va
  Result<uint64_t> read_entry(uint64_t pa);
  bool leaf_present(uint64_t entry, uint64_t* frame_entry) const;
  Result<bool> visit_table(uint64_t table_pa, int level, uint64_t va_base, uint64_t va_start,
                           uint64_t va_end, MappingVisitor& visit, uint64_t* skipped,
                           uint64_t* swap_entries);

  PhysicalMemory& mem_;
  uint64_t dtb_;
  int levels_;
  X86_64Options options_;
  uint64_t dm_base_ = 0;
  uint64_t dm_size_ = 0;
  uint64_t generation_ = 1;
  uint64_t tables_budget_ = 0;
  ReadBudget* budget_ = nullptr;
  PagingStats stats_;
  CacheEntry cache_[kCacheSize];
};

}  // namespace nfm
