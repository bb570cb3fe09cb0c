// Processes and threads: the task list, as the guest's own /proc shows it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel/kernel.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

struct ProcessRow {
  int32_t pid = 0;   // task id (thread id for threads)
  int32_t tgid = 0;  // process id
  int32_t ppid = 0;  // parent's process id, as /proc/PID/stat shows it
  std::string comm;  // as /proc/PID/stat shows it (kernel threads: full name, workqueue desc)
  char state = '?';  // /proc state letter: R S D T t X Z P I
  uint32_t uid = 0, gid = 0;    // real ids (/proc/PID/status Uid:/Gid: first column)
  uint32_t euid = 0, egid = 0;  // effective ids
  uint64_t rss_kb = 0;          // VmRSS: file + anon + shmem pages
  uint64_t vsz_kb = 0;          // VmSize: mm->total_vm
  uint64_t start_time_ns = 0;   // since boot (start_boottime)
  bool kernel_thread = false;
  uint64_t task = 0;  // task_struct address, for cross-referencing
};

struct ProcessOptions {
  bool threads = false;        // one row per thread instead of per process
  size_t max_tasks = 1 << 16;  // walk bound (the kernel's default pid_max is 32768+)
  size_t max_threads = 1 << 14;
};

struct ProcessList {
  std::vector<ProcessRow> rows;
  WalkResult walk;          // the process list walk
  uint64_t row_errors = 0;  // tasks skipped because a read failed
  uint64_t thread_walk_errors = 0;
};

// Resolves the task layout once per kernel (by field names, newest layout
// first); list() then runs as often as wanted.
class ProcessReader {
 public:
  static Result<ProcessReader> create(Kernel& kernel);
  Result<ProcessList> list(const ProcessOptions& options = {});

  struct Layout;

 private:
  ProcessReader(Kernel& kernel, std::shared_ptr<const Layout> layout)
      : kernel_(&kernel), layout_(std::move(layout)) {}
  bool read_task(uint64_t task, ProcessRow& row);
  std::string kernel_thread_name(const std::string& comm, uint32_t flags, uint64_t kthread);
  int64_t percpu_sum_s32(uint64_t counters_field);

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  std::vector<uint8_t> buffer_;
};

}  // namespace nfm
