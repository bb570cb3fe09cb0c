#include "memory/scan.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace nfm {

namespace {
constexpr uint64_t kChunk = 4 << 20;  // big reads: the cost is syscalls, not bytes
}

uint64_t scan_physical(PhysicalMemory& memory, std::string_view needle,
                       const std::function<bool(uint64_t pa)>& on_match) {
  if (needle.empty()) return 0;
  const uint64_t overlap = needle.size() - 1;
  std::vector<uint8_t> buffer;
  uint64_t matches = 0;
  for (const PhysRange& range : memory.ranges()) {
    for (uint64_t pos = range.start; pos < range.end();) {
      const uint64_t len = std::min(kChunk + overlap, range.end() - pos);
      const uint8_t* data = memory.view(pos, len);
      if (!data) {
        buffer.resize(len);
        if (!memory.read(pos, buffer.data(), len)) {
          // Unreadable chunk: skip it rather than give up the whole scan.
          pos += std::min(kChunk, len);
          continue;
        }
        data = buffer.data();
      }
      const uint8_t* p = data;
      const uint8_t* end = data + len;
      while (p < end) {
        const void* hit = memmem(p, static_cast<size_t>(end - p), needle.data(), needle.size());
        if (!hit) break;
        const auto* h = static_cast<const uint8_t*>(hit);
        const uint64_t pa = pos + static_cast<uint64_t>(h - data);
        // A hit inside the overlap tail is found again by the next chunk.
        if (pa - pos < kChunk || pos + len == range.end()) {
          ++matches;
          if (!on_match(pa)) return matches;
        }
        p = h + 1;
      }
      if (pos + len == range.end()) break;
      pos += kChunk;
    }
  }
  return matches;
}

uint64_t scan_page_starts(PhysicalMemory& memory, std::string_view prefix,
                          const std::function<bool(uint64_t pa)>& on_match) {
  constexpr uint64_t kPage = 4096;
  constexpr size_t kMaxPrefix = 64;
  constexpr size_t kBatch = 1024;  // pages per read_many: one system call for live guests
  if (prefix.empty() || prefix.size() > kMaxPrefix) return 0;
  std::vector<ReadOp> ops;
  std::vector<char> heads(kBatch * kMaxPrefix);
  uint64_t matches = 0;
  for (const PhysRange& range : memory.ranges()) {
    uint64_t page = (range.start + kPage - 1) & ~(kPage - 1);
    while (page < range.end() && range.end() - page >= prefix.size()) {
      const uint64_t span = std::min<uint64_t>(kBatch * kPage, range.end() - page);
      if (const uint8_t* data = memory.view(page, span)) {
        for (uint64_t off = 0; off + prefix.size() <= span; off += kPage) {
          if (std::memcmp(data + off, prefix.data(), prefix.size()) != 0) continue;
          ++matches;
          if (!on_match(page + off)) return matches;
        }
      } else {
        ops.clear();
        for (uint64_t off = 0; off + prefix.size() <= span; off += kPage)
          ops.push_back({page + off, heads.data() + ops.size() * kMaxPrefix, prefix.size()});
        memory.read_many(ops);
        for (const ReadOp& op : ops) {
          if (!op.ok || std::memcmp(op.dst, prefix.data(), prefix.size()) != 0) continue;
          ++matches;
          if (!on_match(op.pa)) return matches;
        }
      }
      page += span;
    }
  }
  return matches;
}

}  // namespace nfm
