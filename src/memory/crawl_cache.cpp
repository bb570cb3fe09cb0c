#include "memory/crawl_cache.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace nfm {

namespace {

// Reads this large or larger go straight to the source: one call for the whole run
// (a log ring, a BTF blob) beats filling and flushing the cache page by page.
constexpr size_t kBypassBytes = 4 * CrawlCache::kPageSize;

size_t bucket_for(uint64_t pfn, size_t mask) {
  return static_cast<size_t>((pfn * 0x9E3779B97F4A7C15ULL) >> 20) & mask;
}

}  // namespace

CrawlCache::CrawlCache(PhysicalMemoryPtr inner, size_t max_pages)
    : inner_(std::move(inner)), max_pages_(std::max<size_t>(max_pages, 1)) {
  arena_ = std::make_unique_for_overwrite<uint8_t[]>(max_pages_ * kPageSize);
  const size_t buckets = std::bit_ceil(max_pages_ * 2);  // load factor <= 1/2
  keys_.assign(buckets, 0);
  slots_.assign(buckets, 0);
  sync_stats();
}

void CrawlCache::begin_crawl() {
  std::fill(keys_.begin(), keys_.end(), 0);
  used_ = 0;
}

const uint8_t* CrawlCache::find(uint64_t pfn) const {
  const size_t mask = keys_.size() - 1;
  for (size_t i = bucket_for(pfn, mask);; i = (i + 1) & mask) {
    if (keys_[i] == 0) return nullptr;
    if (keys_[i] == pfn + 1) return arena_.get() + size_t{slots_[i]} * kPageSize;
  }
}

uint8_t* CrawlCache::insert(uint64_t pfn) {
  if (used_ == max_pages_) begin_crawl();
  const size_t mask = keys_.size() - 1;
  size_t i = bucket_for(pfn, mask);
  while (keys_[i] != 0) i = (i + 1) & mask;
  keys_[i] = pfn + 1;
  slots_[i] = static_cast<uint32_t>(used_);
  return arena_.get() + used_++ * kPageSize;
}

Result<const uint8_t*> CrawlCache::page(uint64_t pfn) {
  if (const uint8_t* p = find(pfn)) {
    ++hits_;
    return p;
  }
  // Fill the next free slot first and publish it only once the read succeeded.
  if (used_ == max_pages_) begin_crawl();
  uint8_t* slot = arena_.get() + used_ * kPageSize;
  NFM_TRY(inner_->read(pfn * kPageSize, slot, kPageSize));
  uint8_t* published = insert(pfn);
  (void)published;  // == slot: insert() hands out slots in order
  return static_cast<const uint8_t*>(slot);
}

Result<void> CrawlCache::read(uint64_t pa, void* dst, size_t len) {
  ++stats_.reads;
  if (len > 1 && len < kBypassBytes && pa / kPageSize != (pa + len - 1) / kPageSize) {
    // Several pages (a whole task_struct, say): fetch the missing ones in one
    // source call, not one call each.
    const ReadOp op{pa, dst, len};
    prefetch(std::span<const ReadOp>(&op, 1));
  }
  Result<void> result;
  if (len >= kBypassBytes) {
    result = inner_->read(pa, dst, len);
  } else {
    auto* out = static_cast<uint8_t*>(dst);
    while (len > 0) {
      const size_t in_page = pa % kPageSize;
      const size_t n = std::min(len, kPageSize - in_page);
      auto p = page(pa / kPageSize);
      if (p) {
        std::memcpy(out, *p + in_page, n);
      } else if (auto direct = inner_->read(pa, out, n); !direct) {
        // The whole page is not readable (a range edge, a hole): the exact bytes
        // asked for may still be, and if not the source's error says where.
        result = direct;
        break;
      }
      pa += n;
      out += n;
      len -= n;
    }
  }
  sync_stats();
  return result;
}

size_t CrawlCache::read_many(std::span<ReadOp> ops) {
  // Fetch every missing page of the batch in one batched source call, then serve
  // the ops from the cache. Pages beyond the cache's room are read op by op.
  prefetch(ops);
  size_t done = 0;
  for (ReadOp& op : ops) {
    op.ok = read(op.pa, op.dst, op.len).ok();
    done += op.ok;
  }
  sync_stats();
  return done;
}

void CrawlCache::prefetch(std::span<const ReadOp> ops) {
  std::vector<ReadOp> fetch;
  std::vector<uint64_t> pfns;
  size_t room = max_pages_ - used_;
  for (const ReadOp& op : ops) {
    if (op.len == 0 || op.len >= kBypassBytes) continue;
    for (uint64_t pfn = op.pa / kPageSize; pfn <= (op.pa + op.len - 1) / kPageSize; ++pfn) {
      if (find(pfn) || std::find(pfns.begin(), pfns.end(), pfn) != pfns.end()) continue;
      if (pfns.size() == room) break;
      pfns.push_back(pfn);
    }
  }
  if (!pfns.empty()) {
    fetch.reserve(pfns.size());
    for (size_t i = 0; i < pfns.size(); ++i)
      fetch.push_back({pfns[i] * kPageSize, arena_.get() + (used_ + i) * kPageSize, kPageSize});
    inner_->read_many(fetch);
    // Publish the pages that arrived, compacting them into consecutive slots.
    for (size_t i = 0; i < fetch.size(); ++i) {
      if (!fetch[i].ok) continue;
      uint8_t* slot = arena_.get() + used_ * kPageSize;
      if (slot != fetch[i].dst) std::memmove(slot, fetch[i].dst, kPageSize);
      insert(pfns[i]);
    }
  }
}

void CrawlCache::sync_stats() {
  const MemoryStats& s = inner_->stats();
  stats_.bytes = s.bytes;
  stats_.syscalls = s.syscalls;
  stats_.failures = s.failures;
  stats_.cache_hits = hits_;
}

}  // namespace nfm
