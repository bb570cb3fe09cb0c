// Processes and threads: the task list, as the guest's own /proc shows it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/kernel.h"
#include "kernel/paths.h"
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
  uint64_t rss_anon_kb = 0;     // RssAnon
  uint64_t rss_file_kb = 0;     // RssFile
  uint64_t rss_shmem_kb = 0;    // RssShmem
  uint64_t vsz_kb = 0;          // VmSize: mm->total_vm
  uint64_t start_time_ns = 0;   // since boot (start_boottime)
  // The argument vector as /proc/PID/cmdline reads it, split at NULs (empty for
  // kernel threads and exited processes).
  std::vector<std::string> cmdline;
  std::string exe;      // /proc/PID/exe (ProcessOptions::exe; "" for kernel threads)
  int32_t threads = 0;  // threads in the process (signal->nr_threads)
  int32_t nice = 0;     // /proc stat field 19: static_prio - 120
  int32_t prio = 0;     // /proc stat field 18: prio - MAX_RT_PRIO
  // CPU time as /proc/PID/stat (process rows) or /proc/PID/task/TID/stat
  // (thread rows) reports it: the tick-sampled split scaled to the exact runtime.
  uint64_t utime_ns = 0, stime_ns = 0;
  uint64_t runtime_ns = 0;  // exact CPU time (sum_exec_runtime; process rows: the whole group)
  // Share of one CPU in percent: over the task's lifetime (like ps), or over an
  // interval once measure_cpu_over_interval() has compared two crawls (like top).
  double cpu_pct = 0;
  bool kernel_thread = false;
  uint64_t task = 0;  // task_struct address, for cross-referencing
};

struct ProcessOptions {
  bool threads = false;        // one row per thread instead of per process
  size_t max_tasks = 1 << 16;  // walk bound (the kernel's default pid_max is 32768+)
  size_t max_threads = 1 << 14;
  // /proc/PID/cmdline has no bound but a process's argument area does not
  // need more than this to be recognised; longer ones are cut and counted.
  size_t max_cmdline = 128 << 10;
  // Read each process's arguments from its own memory (a user page-table walk and
  // the argument pages per process: more than the rest of a basic crawl).
  bool cmdline = true;
  bool exe = false;  // resolve each process's executable path (a dentry walk per process)
};

struct ProcessList {
  std::vector<ProcessRow> rows;
  WalkResult walk;          // the process list walk
  uint64_t row_errors = 0;  // tasks skipped because a read failed
  uint64_t thread_walk_errors = 0;
  uint64_t memory_errors = 0;      // mm_structs unreadable: no memory counters, no arguments
  uint64_t cmdline_errors = 0;     // argument areas that could not be read (whole or part)
  uint64_t cmdline_truncated = 0;  // argument areas longer than max_cmdline
  uint64_t exe_errors = 0;         // executables whose path could not be read
  // The guest's CLOCK_BOOTTIME when the crawl ran (its timekeeper; 0 if unreadable):
  // the clock for cpu_pct, so that a paused or slowed guest is measured in its own time.
  uint64_t clock_ns = 0;
};

// The tick-sampled utime/stime split scaled to the exact runtime, as the kernel's
// cputime_adjust() computes it (kernel/sched/cputime.c) given the previous
// answer it keeps (prev_cputime): /proc never shows a value going backwards.
// Unlike the kernel, it does not store its answer back.
struct CpuTimes {
  uint64_t utime = 0, stime = 0;
  bool operator==(const CpuTimes&) const = default;
};
CpuTimes adjust_cputime(uint64_t utime, uint64_t stime, uint64_t runtime, CpuTimes prev);

// /proc/PID/cmdline bytes split at NULs, the last argument's NUL optional.
std::vector<std::string> split_cmdline(std::string_view raw);

// Turns every row's cpu_pct of `later` into its CPU share since `earlier`, a
// crawl of the same guest: runtime gained over guest time elapsed (for a task
// born in between, since its start). A guest that did not run gets 0.
void measure_cpu_over_interval(ProcessList& later, const ProcessList& earlier);

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
  struct TaskTimes {
    uint64_t utime = 0, stime = 0, runtime = 0;
  };
  struct Crawl;
  bool read_task(uint64_t task, ProcessRow& row, Crawl& crawl, TaskTimes& times);
  Result<TaskTimes> read_times(uint64_t task);
  void read_memory(uint64_t mm, ProcessRow& row, Crawl& crawl);
  std::string read_cmdline(std::span<const uint8_t> mm, Crawl& crawl);
  void prefetch(const std::vector<uint64_t>& tasks);
  std::string kernel_thread_name(const std::string& comm, uint32_t flags, uint64_t kthread);
  int64_t percpu_sum_s32(uint64_t counters_field);
  void read_executables(ProcessList& out);

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  std::vector<uint8_t> buffer_;
  std::optional<Result<PathResolver>> paths_;  // for exe, made on first use
};

// The processes a per-process feature visits (open files, memory maps, socket
// owners): the caller's list when it has crawled this moment's already (a frame
// walks the task list once for all of them), else a walk of its own that reads
// only what those features use (no command lines, no executables).
class ProcessSet {
 public:
  static Result<ProcessSet> of(ProcessReader& reader, const ProcessList* shared, size_t max_tasks);
  const ProcessList& list() const { return shared_ ? *shared_ : own_; }
  // The rows /proc has (not the idle task), or only process `pid`'s.
  std::vector<const ProcessRow*> in_proc(std::optional<int32_t> pid = std::nullopt) const;

 private:
  const ProcessList* shared_ = nullptr;
  ProcessList own_;
};

}  // namespace nfm
