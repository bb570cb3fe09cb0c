#include "memory/read_budget.h"

#include <fmt/format.h>

#include <algorithm>

namespace nfm {

uint64_t crawl_bytes_for(uint64_t max_bytes, uint64_t ram_bytes) {
  if (max_bytes) return max_bytes;
  constexpr uint64_t kFloor = uint64_t{512} << 20, kCeiling = uint64_t{4} << 30;
  return std::clamp(ram_bytes > kCeiling / 2 ? kCeiling : 2 * ram_bytes, kFloor, kCeiling);
}

void ReadBudget::begin(const CrawlBudget& budget, uint64_t bytes_read) {
  budget_ = budget;
  start_bytes_ = bytes_read;
  deadline_ = std::chrono::steady_clock::now() + budget.max_time;
  used_ = 0;
  reads_ = 0;
  spent_ = false;
  active_ = true;
  reason_.clear();
}

bool ReadBudget::check() {
  if (used_ > budget_.max_bytes) {
    spent_ = true;
    reason_ = fmt::format("read more than {} MiB of guest memory (the crawl's budget)",
                          budget_.max_bytes >> 20);
  } else if (std::chrono::steady_clock::now() > deadline_) {
    spent_ = true;
    reason_ = fmt::format(
        "ran longer than {} ms (the crawl's budget)",
        std::chrono::duration_cast<std::chrono::milliseconds>(budget_.max_time).count());
  }
  return !spent_;
}

}  // namespace nfm
