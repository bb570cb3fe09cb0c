#include "arch/x86_64_paging.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace nfm {

using namespace x86_64;

namespace {

constexpr const char* kLevelNames[] = {"", "PTE", "PMD", "PUD", "P4D/PML4", "PML5"};

int level_shift(int level) {
  return 12 + 9 * (level - 1);
}

// Undoes the canonical sign extension: keep the low `bits` bits.
uint64_t strip(uint64_t va, int bits) {
  return bits == 64 ? va : va & ((1ull << bits) - 1);
}
uint64_t sign_extend(uint64_t va, int bits) {
  return static_cast<uint64_t>(static_cast<int64_t>(va << (64 - bits)) >> (64 - bits));
}

}  // namespace

X86_64AddressSpace::X86_64AddressSpace(PhysicalMemory& mem, uint64_t dtb_pa, int levels,
                                       X86_64Options options)
    : mem_(mem), dtb_(dtb_pa & kAddrMask), levels_(levels == 5 ? 5 : 4), options_(options) {}

void X86_64AddressSpace::set_direct_map(uint64_t page_offset_base, uint64_t size) {
  dm_base_ = page_offset_base;
  dm_size_ = size;
}

Result<uint64_t> X86_64AddressSpace::read_entry(uint64_t pa) {
  uint64_t e;
  if (const uint8_t* p = mem_.view(pa, sizeof e)) {
    std::memcpy(&e, p, sizeof e);  // one load; the guest may be writing it right now
    return e;
  }
  NFM_TRY(mem_.read(pa, &e, sizeof e));
  return e;
}

// A leaf entry the kernel considers present. Sets *frame_entry to the value
// whose address bits hold the frame (inverted for PROT_NONE, see header).
bool X86_64AddressSpace::leaf_present(uint64_t entry, uint64_t* frame_entry) const {
  if (entry & kPresent) {
    *frame_entry = entry;
    return true;
  }
  if (options_.linux_protnone && (entry & kProtNone)) {
    *frame_entry = ~entry;
    return true;
  }
  return false;
}

Result<PageMapping> X86_64AddressSpace::walk(uint64_t va) {
  if (!is_canonical(va, levels_)) return fault_at(va, "non-canonical virtual address");
  ++stats_.walks;
  uint64_t table = dtb_;
  for (int level = levels_; level >= 1; --level) {
    const int shift = level_shift(level);
    const uint64_t slot = table + ((va >> shift) & 511) * 8;
    auto entry = read_entry(slot);
    if (!entry) {
      ++stats_.faults;
      return fault_at(va, fmt::format("{} table at 0x{:x} unreadable", kLevelNames[level], table));
    }
    const uint64_t e = *entry;
    uint64_t fe;
    if (level == 1) {
      if (!leaf_present(e, &fe)) break;
      return PageMapping{va & ~(kPageSize - 1), fe & kAddrMask, kPageSize, e};
    }
    if ((level == 2 || level == 3) && (e & kLarge) && leaf_present(e, &fe)) {
      const uint64_t size = 1ull << shift;
      const uint64_t mask = level == 2 ? kAddrMask2M : kAddrMask1G;
      return PageMapping{va & ~(size - 1), fe & mask, size, e};
    }
    if (!(e & kPresent)) {
      ++stats_.faults;
      return fault_at(va, fmt::format("{} entry not present", kLevelNames[level]));
    }
    table = e & kAddrMask;
  }
  ++stats_.faults;
  return fault_at(va, "PTE not present");
}

Result<uint64_t> X86_64AddressSpace::translate_page(uint64_t va) {
  if (va - dm_base_ < dm_size_) {
    ++stats_.direct_map_hits;
    return (va - dm_base_) & ~(kPageSize - 1);
  }
  const uint64_t vpn = va >> 12;
  CacheEntry& c = cache_[vpn & (kCacheSize - 1)];
  if (c.generation == generation_ && c.vpn == vpn) {
    ++stats_.cache_hits;
    return c.pa_page;
  }
  NFM_ASSIGN(PageMapping m, walk(va));
  const uint64_t pa_page = m.pa + ((va - m.va) & ~(kPageSize - 1));
  c = CacheEntry{vpn, pa_page, generation_};
  return pa_page;
}

Result<uint64_t> X86_64AddressSpace::translate(uint64_t va) {
  if (!is_canonical(va, levels_)) return fault_at(va, "non-canonical virtual address");
  NFM_ASSIGN(uint64_t page, translate_page(va));
  return page | (va & (kPageSize - 1));
}

Result<void> X86_64AddressSpace::read(uint64_t va, void* dst, size_t len) {
  if (len == 0) return {};
  if (budget_ && !budget_->allows(mem_.stats().bytes))
    return make_error(Errc::limit, "crawl budget spent: " + budget_->reason());
  // Fast path: the whole read lies in the direct map, so it is physically contiguous.
  if (va - dm_base_ < dm_size_ && len <= dm_size_ - (va - dm_base_)) {
    ++stats_.direct_map_hits;
    auto r = mem_.read(va - dm_base_, dst, len);
    if (!r) {
      const uint64_t bad_pa = r.error().address.value_or(va - dm_base_);
      return fault_at(bad_pa + dm_base_, "direct-map address not backed: " + r.error().message);
    }
    return {};
  }
  if (!is_canonical(va, levels_) || !is_canonical(va + len - 1, levels_)) {
    return fault_at(va, "non-canonical virtual address");
  }

  // Translate page by page; merge physically contiguous pieces and send them
  // to the source in batches (one process_vm_readv for a multi-page read).
  constexpr size_t kBatch = 16;
  ReadOp ops[kBatch];
  uint64_t op_va[kBatch];
  size_t n = 0;
  auto flush_ops = [&]() -> Result<void> {
    if (n == 0) return {};
    const size_t count = std::exchange(n, 0);
    if (count == 1) {
      if (!mem_.read(ops[0].pa, ops[0].dst, ops[0].len)) {
        return fault_at(op_va[0], fmt::format("guest physical 0x{:x} not readable", ops[0].pa));
      }
      return {};
    }
    if (mem_.read_many(std::span<ReadOp>(ops, count)) == count) return {};
    for (size_t i = 0; i < count; ++i) {
      if (!ops[i].ok) {
        return fault_at(op_va[i], fmt::format("guest physical 0x{:x} not readable", ops[i].pa));
      }
    }
    return {};
  };

  auto* out = static_cast<uint8_t*>(dst);
  uint64_t cur = va;
  size_t left = len;
  while (left > 0) {
    const size_t off = cur & (kPageSize - 1);
    const size_t chunk = std::min<size_t>(left, kPageSize - off);
    auto page = translate_page(cur);
    if (!page) {
      NFM_TRY(flush_ops());  // report the first unreadable byte, which may be earlier
      return page.error();
    }
    const uint64_t pa = *page + off;
    if (n > 0 && ops[n - 1].pa + ops[n - 1].len == pa) {
      ops[n - 1].len += chunk;
    } else {
      if (n == kBatch) NFM_TRY(flush_ops());
      ops[n] = ReadOp{pa, out, chunk, false};
      op_va[n] = cur;
      ++n;
    }
    out += chunk;
    cur += chunk;
    left -= chunk;
  }
  return flush_ops();
}

Result<bool> X86_64AddressSpace::visit_table(uint64_t table_pa, int level, uint64_t base,
                                             uint64_t lo, uint64_t hi, MappingVisitor& visit,
                                             uint64_t* skipped, uint64_t* swap_entries) {
  if (++stats_.tables_read > tables_budget_) {
    return make_error(Errc::limit, "page-table iteration read too many tables");
  }
  uint64_t local[512];
  const uint64_t* table;
  if (const uint8_t* p = mem_.view(table_pa, kPageSize)) {
    table = reinterpret_cast<const uint64_t*>(p);
  } else if (mem_.read(table_pa, local, sizeof local)) {
    table = local;
  } else {
    if (skipped) ++*skipped;
    return true;
  }
  const int bits = levels_ == 5 ? 57 : 48;
  const int shift = level_shift(level);
  const uint64_t span = 1ull << shift;
  const unsigned first = static_cast<unsigned>((lo - base) >> shift);
  const unsigned last = static_cast<unsigned>((hi - base) >> shift);
  for (unsigned i = first; i <= last; ++i) {
    uint64_t e;
    std::memcpy(&e, &table[i], sizeof e);  // one load per entry; the guest may change it
    const uint64_t entry_base = base + (uint64_t{i} << shift);
    uint64_t fe;
    if (level == 1) {
      if (!leaf_present(e, &fe)) {
        // Linux keeps a swap (or migration) entry in a non-present, non-empty PTE.
        if (e && swap_entries) ++*swap_entries;
        continue;
      }
      if (!visit(PageMapping{sign_extend(entry_base, bits), fe & kAddrMask, kPageSize, e}))
        return false;
    } else if ((level == 2 || level == 3) && (e & kLarge) && leaf_present(e, &fe)) {
      const uint64_t mask = level == 2 ? kAddrMask2M : kAddrMask1G;
      if (!visit(PageMapping{sign_extend(entry_base, bits), fe & mask, span, e})) return false;
    } else if (e & kPresent) {
      const uint64_t sub_lo = std::max(lo, entry_base);
      const uint64_t sub_hi = std::min(hi, entry_base + (span - 1));
      NFM_ASSIGN(bool go_on, visit_table(e & kAddrMask, level - 1, entry_base, sub_lo, sub_hi,
                                         visit, skipped, swap_entries));
      if (!go_on) return false;
    }
  }
  return true;
}

Result<void> X86_64AddressSpace::for_each_mapping(uint64_t va_start, uint64_t va_end,
                                                  MappingVisitor visit, uint64_t* skipped,
                                                  uint64_t* swap_entries) {
  const int bits = levels_ == 5 ? 57 : 48;
  const uint64_t half = 1ull << (bits - 1);
  const uint64_t high_start = ~0ull << (bits - 1);         // first canonical upper-half address
  const uint64_t last = va_end == 0 ? ~0ull : va_end - 1;  // inclusive; va_end 0 = top of memory
  if (va_end != 0 && va_end <= va_start) return {};
  tables_budget_ = stats_.tables_read + options_.max_tables;

  // The two canonical halves, each walked in stripped (non-sign-extended) form.
  struct Piece {
    uint64_t lo, hi;
  } pieces[2];
  int n = 0;
  if (va_start < half) pieces[n++] = {va_start, std::min(last, half - 1)};
  if (last >= high_start)
    pieces[n++] = {strip(std::max(va_start, high_start), bits), strip(last, bits)};
  for (int i = 0; i < n; ++i) {
    NFM_ASSIGN(bool go_on, visit_table(dtb_, levels_, 0, pieces[i].lo, pieces[i].hi, visit, skipped,
                                       swap_entries));
    if (!go_on) break;
  }
  return {};
}

}  // namespace nfm
