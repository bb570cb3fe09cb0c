// `memory_maps`' section of a frame: every process's memory maps as
// /proc/PID/maps shows them. Row types and columns only: no kernel model here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/walk_result.h"
#include "schema/fields.h"

namespace nfm {

struct MappedPage {
  uint64_t va = 0;
  uint64_t pa = 0;
  uint64_t size = 0;  // 4 KiB, 2 MiB or 1 GiB
  bool writable = false;
};

struct MemoryMapRow {
  int32_t pid = 0;
  std::string comm;
  uint64_t start = 0, end = 0;
  std::string perms;    // "r-xp"
  uint64_t offset = 0;  // file offset in bytes (0 for anonymous memory)
  uint32_t dev = 0;     // kernel encoding (major << 20 | minor); "fe:01" in /proc
  uint64_t inode = 0;
  std::string path;               // file path, [heap], [stack], [vdso], [anon:NAME] or ""
  uint64_t flags = 0;             // vm_flags
  uint64_t vma = 0;               // struct vm_area_struct address
  std::vector<MappedPage> pages;  // with MemoryMapOptions::pages
  uint64_t swapped_pages = 0;     // with pages: 4 KiB pages the guest swapped out
};

struct MemoryMapOptions {
  std::optional<int32_t> pid;  // only this process
  bool pages = false;          // list present pages
  size_t max_tasks = 1 << 16;
  size_t max_vmas = 1 << 17;  // per process (the kernel's default max_map_count is 65530)
  size_t max_tree_nodes = 1 << 16;
  // With pages: at most this many 4 KiB pages per process (large pages count whole).
  // Page tables can map one frame at every address: the list must not grow with them.
  uint64_t max_pages = 1 << 22;
};

struct MemoryMapList {
  static constexpr std::string_view kFeature = "memory_maps";
  std::vector<MemoryMapRow> rows;  // by pid, then address
  WalkResult walk;                 // the process list walk
  uint64_t task_errors = 0;        // processes whose mm could not be read
  uint64_t vma_walk_errors = 0;    // VMA lists/trees that ended early
  uint64_t row_errors = 0;         // VMAs skipped because a read failed
  uint64_t page_errors = 0;        // page-table walks that failed or skipped tables
};

// The /proc/PID/maps line for a row (without the newline).
std::string proc_maps_line(const MemoryMapRow& row);

const schema::Fields<MemoryMapRow>& memory_map_fields();
// The rows as JSON, with each row's present pages when `pages` (nfm maps --pages).
schema::json memory_maps_json(const std::vector<MemoryMapRow>& rows, bool pages);

}  // namespace nfm
