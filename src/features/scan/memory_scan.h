// The paging-aware memory scanner: YARA over the guest's memory as the guest maps
// it. Each process is one scanned object: its VMAs' runs of present pages (read
// through its own page tables) are the blocks, so a string that crosses a page
// boundary inside a VMA still matches. Kernel memory (the image, every module) is
// one more object.
//
// Paging on both sides: pages the guest does not hold (never touched, swapped out)
// are counted, not read. Pages the host does not hold (a RAM file evicted from the
// page cache, anonymous RAM in the host's swap) are counted and skipped unless
// fault_in: reading them would make the host bring them back, and a scan of a
// whole guest would page it all in.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "features/memory_maps/memory_maps.h"
#include "features/processes/processes.h"
#include "features/scan/rows.h"
#include "features/scan/yara_rules.h"
#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

struct ScanProgress {
  uint64_t processes_done = 0, processes_total = 0;
  uint64_t bytes_scanned = 0;
};

struct ScanOptions {
  std::shared_ptr<const YaraRules> rules;
  std::vector<int32_t> pids;  // only these processes (empty: every process)
  bool processes = true;      // process memory
  bool kernel = false;        // the kernel image and its modules
  bool fault_in = false;      // read pages the host does not hold too
  // Bytes one scan may read (0: no bound but the guest's own size, per process).
  uint64_t max_bytes = 0;
  uint64_t max_block = 16 << 20;  // longer runs are scanned in parts that overlap a page
  std::function<void(const ScanProgress&)> progress;  // after each process
};

// Where a scan that ran out of budget goes on: the process (its pid, 0 for kernel
// memory after the last process) and the first address not yet scanned.
struct ScanCursor {
  int32_t pid = 1;
  uint64_t va = 0;
};

class MemoryScanner {
 public:
  static Result<MemoryScanner> create(Kernel& kernel);

  // Everything `options` names, once: every process (by pid) and kernel memory.
  Result<ScanResult> scan(const ScanOptions& options, const ProcessList* tasks = nullptr);

  // Budgeted: scans from `cursor` on until options.max_bytes are read, then moves the
  // cursor past what was read (wrapping to the first process after kernel memory).
  // `started(pid)` is told each object it starts from its beginning.
  Result<ScanResult> scan_from(ScanCursor& cursor, const ScanOptions& options,
                               const ProcessList* tasks,
                               const std::function<void(int32_t pid)>& started);

 private:
  MemoryScanner(Kernel& kernel, ProcessReader processes, MemoryMapReader maps)
      : kernel_(&kernel), processes_(std::move(processes)), maps_(std::move(maps)) {}

  Kernel* kernel_;
  ProcessReader processes_;
  MemoryMapReader maps_;
};

}  // namespace nfm
