// /proc/PID/stat (and /proc/PID/task/TID/stat): the one parser of it, for discovery
// (a QEMU's start time, its state) and for the host's view of a VM (CPU times).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace nfm {

// The fields nfm uses. comm may hold spaces and parentheses: it ends at the *last* ')'.
struct ProcStat {
  std::string comm;
  char state = '?';                           // field 3: R, S, D, Z (zombie), X (dead), ...
  int64_t ppid = 0;                           // field 4
  uint64_t utime_ticks = 0, stime_ticks = 0;  // fields 14, 15 (USER_HZ ticks)
  int64_t num_threads = 0;                    // field 20
  uint64_t start_time = 0;  // field 22, ticks since host boot: with the pid, a process's identity
  uint64_t vsize = 0;       // field 23, bytes
  int64_t rss_pages = 0;    // field 24
  int processor = -1;       // field 39: the CPU it last ran on (-1: line too short)

  // A process that exited and waits to be reaped has no memory left to read.
  bool exited() const { return state == 'Z' || state == 'X'; }
};

// Errors (bad_format): no "(comm)", fewer than 24 fields, a field that is not a number.
Result<ProcStat> parse_proc_stat(std::string_view text);

// Reads and parses /proc/PID/stat. Errors: not_found when the process is gone.
Result<ProcStat> read_proc_stat(pid_t pid);

}  // namespace nfm
