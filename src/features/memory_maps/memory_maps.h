// Memory maps of every process: its VMAs, as the guest's own /proc/PID/maps
// shows them, and optionally the pages present in each (with their
// guest-physical addresses, from the process's own page tables).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "features/processes/processes.h"
#include "kernel/kernel.h"
#include "kernel/maple_tree.h"
#include "kernel/paths.h"
#include "kernel/walk.h"
#include "util/result.h"

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
};

struct MemoryMapOptions {
  std::optional<int32_t> pid;  // only this process
  bool pages = false;          // list present pages
  size_t max_tasks = 1 << 16;
  size_t max_vmas = 1 << 17;  // per process (the kernel's default max_map_count is 65530)
  size_t max_tree_nodes = 1 << 16;
};

struct MemoryMapList {
  std::vector<MemoryMapRow> rows;  // by pid, then address
  WalkResult walk;                 // the process list walk
  uint64_t task_errors = 0;        // processes whose mm could not be read
  uint64_t vma_walk_errors = 0;    // VMA lists/trees that ended early
  uint64_t row_errors = 0;         // VMAs skipped because a read failed
  uint64_t page_errors = 0;        // page-table walks that failed or skipped tables
};

// The /proc/PID/maps line for a row (without the newline).
std::string proc_maps_line(const MemoryMapRow& row);

class MemoryMapReader {
 public:
  static Result<MemoryMapReader> create(Kernel& kernel);
  // `tasks`: this crawl's process list when the caller has it (one row per
  // process), else list() walks the tasks itself.
  Result<MemoryMapList> list(const MemoryMapOptions& options = {},
                             const ProcessList* tasks = nullptr);

  struct Layout;

 private:
  MemoryMapReader(Kernel& kernel, PathResolver paths, ProcessReader processes,
                  std::shared_ptr<const Layout> layout)
      : kernel_(&kernel),
        paths_(std::move(paths)),
        processes_(std::move(processes)),
        layout_(std::move(layout)) {}
  void read_process(const ProcessRow& p, MemoryMapList& out, const MemoryMapOptions& options);
  bool read_vma(uint64_t vma, uint64_t mm, const KernelPath& root, MemoryMapRow& row);
  std::vector<uint64_t> vmas_of(uint64_t mm, MemoryMapList& out, const MemoryMapOptions& options);

  Kernel* kernel_;
  PathResolver paths_;
  ProcessReader processes_;
  std::shared_ptr<const Layout> layout_;
  std::vector<uint8_t> vma_buf_;
  uint64_t brk_ = 0, start_brk_ = 0, start_stack_ = 0;  // of the mm being read
};

}  // namespace nfm
