// A per-crawl page cache in front of a memory source whose reads are system calls
// (process_vm_readv, /proc/PID/mem). Within one crawl each guest page is fetched at
// most once, whole: a task_struct, its neighbours on the page and the next field
// read from it cost one call instead of many. Misses of a read_many() batch are
// fetched in one batched call. begin_crawl() forgets everything, so a crawl never
// sees data older than itself, and each crawl reads every page from one moment.
//
// Zero-copy sources (mmap'ed files, memfd RAM) need no cache: reading them is a
// memcpy; wrap only sources without view().
#pragma once

#include <memory>
#include <vector>

#include "memory/physical_memory.h"

namespace nfm {

class CrawlCache : public PhysicalMemory {
 public:
  static constexpr size_t kPageSize = 4096;

  // `max_pages` bounds the memory the cache holds (default 2048 pages = 8 MiB).
  // When a crawl touches more, the cache starts over: correct, just slower.
  explicit CrawlCache(PhysicalMemoryPtr inner, size_t max_pages = 2048);

  // Forgets every cached page: the next reads see the guest as it is now.
  void begin_crawl();

  const std::vector<PhysRange>& ranges() const override { return inner_->ranges(); }
  Result<void> read(uint64_t pa, void* dst, size_t len) override;
  size_t read_many(std::span<ReadOp> ops) override;
  const uint8_t* view(uint64_t pa, size_t len) const override { return inner_->view(pa, len); }
  std::string describe() const override { return inner_->describe(); }
  Result<void> check() const override { return inner_->check(); }
  Result<void> host_residency(uint64_t pa, std::span<HostPage> pages) const override {
    return inner_->host_residency(pa, pages);
  }

  PhysicalMemory& inner() { return *inner_; }

  // Fetches the pages of `ops` (only pa and len matter) not cached yet, in one
  // batched source call as room allows: reads about to come then hit the cache.
  void prefetch(std::span<const ReadOp> ops);

 private:
  // The cached copy of page `pfn`, or nullptr.
  const uint8_t* find(uint64_t pfn) const;
  // A slot for page `pfn` (not yet filled); starts over when full.
  uint8_t* insert(uint64_t pfn);
  Result<const uint8_t*> page(uint64_t pfn);
  void sync_stats();

  PhysicalMemoryPtr inner_;
  size_t max_pages_;
  // max_pages_ pages, allocated once and not zeroed: a page of it costs memory only
  // once a crawl has used it (most crawls use a fraction).
  std::unique_ptr<uint8_t[]> arena_;
  std::vector<uint64_t> keys_;   // open addressing: pfn + 1 per bucket (0 = empty)
  std::vector<uint32_t> slots_;  // bucket -> page index in arena_
  size_t used_ = 0;
  uint64_t hits_ = 0;
};

}  // namespace nfm
