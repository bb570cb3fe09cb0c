#include "memory/physical_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "memory/mapped_file.h"

namespace nfm {

size_t PhysicalMemory::read_many(std::span<ReadOp> ops) {
  size_t done = 0;
  for (ReadOp& op : ops) {
    op.ok = read(op.pa, op.dst, op.len).ok();
    done += op.ok;
  }
  return done;
}

Result<void> mapping_residency(const uint8_t* data, std::span<HostPage> pages) {
  // mincore() wants a page-aligned start; a view may begin inside a page.
  const auto addr = reinterpret_cast<uintptr_t>(data);
  const uintptr_t base = addr & ~uintptr_t{kHostPageSize - 1};
  const size_t lead = addr - base;
  std::vector<unsigned char> vec((lead + pages.size() * kHostPageSize + kHostPageSize - 1) /
                                 kHostPageSize);
  // NOLINTNEXTLINE(performance-no-int-to-ptr): our own mapping, rounded down to its page.
  if (mincore(reinterpret_cast<void*>(base), pages.size() * kHostPageSize + lead, vec.data()) != 0)
    return errno_error(errno, "mincore on a guest RAM mapping");
  for (size_t i = 0; i < pages.size(); ++i) {
    // A page that starts inside a host page pair: resident only if both halves are.
    const size_t first = (lead + i * kHostPageSize) / kHostPageSize;
    const size_t last = (lead + (i + 1) * kHostPageSize - 1) / kHostPageSize;
    bool in = true;
    for (size_t j = first; j <= last; ++j) in = in && (vec[j] & 1);
    pages[i] = in ? HostPage::resident : HostPage::not_resident;
  }
  return {};
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
