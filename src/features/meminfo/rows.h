// `meminfo`'s section of a frame: the memory summary of the guest's /proc/meminfo
// (fs/proc/meminfo.c). Row type and columns only.
#pragma once

#include <cstdint>
#include <string_view>

#include "schema/fields.h"

namespace nfm {

// All in kB, as /proc/meminfo prints them.
struct MemInfo {
  static constexpr std::string_view kFeature = "meminfo";
  uint64_t total_kb = 0;       // MemTotal: totalram_pages
  uint64_t free_kb = 0;        // MemFree: NR_FREE_PAGES
  uint64_t available_kb = 0;   // MemAvailable: si_mem_available()
  uint64_t buffers_kb = 0;     // Buffers: nr_blockdev_pages()
  uint64_t cached_kb = 0;      // Cached: NR_FILE_PAGES - swap cache - buffers
  uint64_t swap_total_kb = 0;  // SwapTotal: total_swap_pages
  uint64_t swap_free_kb = 0;   // SwapFree: nr_swap_pages
};

const schema::Fields<MemInfo>& meminfo_fields();

}  // namespace nfm
