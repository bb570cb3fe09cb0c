// Searching guest-physical memory for byte patterns (kernel banners, notes).
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "memory/physical_memory.h"

namespace nfm {

// Calls `on_match(pa)` for each occurrence of `needle` in backed guest memory,
// in ascending address order, until it returns false. Reads in large chunks
// (zero-copy where the source allows); matches across chunk borders are found.
// Returns the number of matches reported.
uint64_t scan_physical(PhysicalMemory& memory, std::string_view needle,
                       const std::function<bool(uint64_t pa)>& on_match);

// The same for a `prefix` that can only sit at the start of a 4 KiB page (data the
// kernel keeps in a page of its own): reads a few bytes per page, batched, instead
// of every byte. `prefix` is at most 64 bytes.
uint64_t scan_page_starts(PhysicalMemory& memory, std::string_view prefix,
                          const std::function<bool(uint64_t pa)>& on_match);

}  // namespace nfm
