// `processes`' section of a frame: processes and threads as the guest's own /proc
// shows them. Row types, options and columns only: no kernel model here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/walk_result.h"
#include "schema/fields.h"

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
  static constexpr std::string_view kFeature = "processes";
  std::vector<ProcessRow> rows;
  WalkResult walk;          // the process list walk
  uint64_t row_errors = 0;  // tasks skipped because a read failed
  uint64_t thread_walk_errors = 0;
  uint64_t memory_errors = 0;   // mm_structs unreadable: no memory counters, no arguments
  uint64_t cmdline_errors = 0;  // argument areas that could not be read (whole or part)
  // Values past their physical limits, not shown as read: a thread count outside
  // 1..PID_MAX_LIMIT (the threads seen are shown instead), a reversed argument
  // area (no command line shown).
  uint64_t implausible_values = 0;
  uint64_t cmdline_truncated = 0;  // argument areas longer than max_cmdline
  uint64_t exe_errors = 0;         // executables whose path could not be read
  // Task-list walks that ended torn (a task exited under the walk) and were walked again.
  uint64_t torn_retries = 0;
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

const schema::Fields<ProcessRow>& process_fields();

}  // namespace nfm
