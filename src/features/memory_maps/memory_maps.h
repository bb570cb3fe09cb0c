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
#include "features/memory_maps/rows.h"
#include "kernel/kernel.h"
#include "kernel/maple_tree.h"
#include "kernel/paths.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

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
