// Guest-physical memory: the one narrow interface every memory source implements
// (live QEMU process, mmap'ed RAM file/memfd, raw dump, ELF dump, ...).
// A source knows nothing about limits, caching or kernels; those live above it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "util/result.h"

namespace nfm {

// A run of guest-physical addresses that is backed by memory.
struct PhysRange {
  uint64_t start = 0;
  uint64_t size = 0;
  uint64_t end() const { return start + size; }
  bool contains(uint64_t pa, uint64_t len = 1) const {
    return pa >= start && len <= size && pa - start <= size - len;
  }
};

// One read in a batch. `ok` is filled in by read_many().
struct ReadOp {
  uint64_t pa = 0;
  void* dst = nullptr;
  size_t len = 0;
  bool ok = false;
};

// Where the host keeps one 4 KiB guest page, asked without touching it: reading a
// page the host does not hold makes it bring the page back (a scan of every page
// would page a whole guest in).
enum class HostPage : uint8_t {
  resident,      // in host RAM: reading it costs nothing extra
  not_resident,  // not in host RAM (a file page evicted from the page cache, never touched)
  swapped,       // in the host's swap
  unknown,       // the source cannot tell (read as resident)
};
inline constexpr uint64_t kHostPageSize = 4096;

// Counters a source keeps so crawls can report their cost.
struct MemoryStats {
  uint64_t reads = 0;       // read requests served
  uint64_t bytes = 0;       // bytes copied out
  uint64_t syscalls = 0;    // host system calls made for reads
  uint64_t failures = 0;    // reads that failed
  uint64_t cache_hits = 0;  // pages served from a per-crawl cache (CrawlCache)
};

class PhysicalMemory {
 public:
  virtual ~PhysicalMemory() = default;

  // Backed guest-physical ranges, sorted by start, non-overlapping.
  virtual const std::vector<PhysRange>& ranges() const = 0;

  // Reads exactly `len` bytes at `pa`. Fails with Errc::fault (address set) if any
  // byte is not backed or the host read fails.
  virtual Result<void> read(uint64_t pa, void* dst, size_t len) = 0;

  // Many reads at once; sources that can batch (process_vm_readv) override this.
  // Returns how many ops succeeded; each op's `ok` says which.
  virtual size_t read_many(std::span<ReadOp> ops);

  // Zero-copy view of [pa, pa+len) when the source maps guest RAM into our
  // address space (mmap'ed file/memfd/dump), else nullptr. The view is read-only
  // and valid for the lifetime of the source; a live guest may change it under us.
  virtual const uint8_t* view(uint64_t pa, size_t len) const {
    (void)pa;
    (void)len;
    return nullptr;
  }

  // Where the host keeps each 4 KiB page of [pa, pa + 4 KiB * pages.size()) (`pa`
  // page-aligned), without reading any of them. Only a live guest's host pages come
  // and go; the default (memory images) says `unknown`.
  virtual Result<void> host_residency(uint64_t pa, std::span<HostPage> pages) const;

  // Whether the source still holds what it held when opened. A mapped file that
  // shrank (a dump rewritten, a guest's RAM file truncated) fails here: whatever
  // was read since the last check may be zeros instead of the guest's bytes.
  virtual Result<void> check() const { return {}; }

  // Human description for messages and frame metadata, e.g. "qemu:1234 (anonymous RAM, 512 MiB)".
  virtual std::string describe() const = 0;

  const MemoryStats& stats() const { return stats_; }

  // Highest backed address + 1.
  uint64_t end() const { return ranges().empty() ? 0 : ranges().back().end(); }
  bool contains(uint64_t pa, uint64_t len = 1) const;

 protected:
  MemoryStats stats_;
};

using PhysicalMemoryPtr = std::unique_ptr<PhysicalMemory>;

}  // namespace nfm
