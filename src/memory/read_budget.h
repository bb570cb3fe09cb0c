// What one crawl of one VM may cost: bytes read from the guest and wall time. The
// guest decides how long its lists are and how large its tables claim to be (an
// fd table of 2^31 slots, a million tasks); the budget is the host's, and a guest
// cannot raise it. Every read through a kernel or user address space is checked;
// once the budget is spent every further read of that crawl fails, the walks stop
// at their next read, and the frame says which feature ran out (frame_crawler.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace nfm {

struct CrawlBudget {
  // 0: twice the guest's RAM, at least 512 MiB and at most 4 GiB (crawl_bytes_for). A
  // full frame of a crowded guest (1,500 daemon-like processes with 35,000 open files,
  // 63,000 mappings and 3,000 sockets, in 1.5 GiB) read 264 MiB in 1 s; the defaults
  // are ~10x that (docs/security.md). The ceiling bounds what a guest that claims more
  // RAM (a dump's headers) or inflates its tables can cost.
  uint64_t max_bytes = 0;
  std::chrono::nanoseconds max_time = std::chrono::seconds(10);
};

// The byte budget of a crawl of a guest with `ram_bytes` of RAM, given `max_bytes`
// (0: the default above).
uint64_t crawl_bytes_for(uint64_t max_bytes, uint64_t ram_bytes);

class ReadBudget {
 public:
  // Starts a crawl: nothing spent, the clock starts now. `bytes_read` is the
  // memory source's running count of bytes it read from the host (MemoryStats::bytes):
  // what the host pays, whole pages where a cache fetches whole pages. `budget` has
  // its byte limit resolved (crawl_bytes_for).
  void begin(const CrawlBudget& budget, uint64_t bytes_read);
  // Ends it: reads outside a crawl (attach, the crawler's own checks) are not charged.
  void end() {
    active_ = false;
    spent_ = false;
  }

  // Before a read, with the source's running byte count: false once the budget is
  // spent, and for every read after that until the next begin().
  bool allows(uint64_t bytes_read) {
    if (!active_) return true;
    if (spent_) return false;
    used_ = bytes_read - start_bytes_;
    // The clock is read every 256 reads: a read is ~100 ns, a clock read ~20 ns.
    if (used_ > budget_.max_bytes || (++reads_ & 255) == 0) return check();
    return true;
  }
  bool spent() const { return spent_; }
  // Why the budget is spent ("read more than 512 MiB ..."), else "".
  const std::string& reason() const { return reason_; }

 private:
  bool check();

  CrawlBudget budget_;
  std::chrono::steady_clock::time_point deadline_{};
  uint64_t start_bytes_ = 0;
  uint64_t used_ = 0;
  uint64_t reads_ = 0;
  bool active_ = false;
  bool spent_ = false;
  std::string reason_;
};

}  // namespace nfm
