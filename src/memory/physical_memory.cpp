#include "memory/physical_memory.h"

#include <algorithm>

namespace nfm {

size_t PhysicalMemory::read_many(std::span<ReadOp> ops) {
  size_t done = 0;
  for (ReadOp& op : ops) {
    op.ok = read(op.pa, op.dst, op.len).ok();
    done += op.ok;
  }
  return done;
}

Result<void> PhysicalMemory::host_residency(uint64_t pa, std::span<HostPage> pages) const {
  (void)pa;
  std::fill(pages.begin(), pages.end(), HostPage::unknown);
  return {};
}

bool PhysicalMemory::contains(uint64_t pa, uint64_t len) const {
  const auto& rs = ranges();
  // First range whose end is beyond pa; the request must fit inside it.
  auto it = std::upper_bound(rs.begin(), rs.end(), pa,
                             [](uint64_t a, const PhysRange& r) { return a < r.end(); });
  return it != rs.end() && it->contains(pa, len);
}

}  // namespace nfm
