// The host's QEMU processes, from /proc: which processes are QEMUs, their command
// lines and start times, and which one carries a -name.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/qemu/cmdline.h"
#include "util/result.h"

namespace nfm {

struct QemuProcessInfo {
  pid_t pid = 0;
  std::string name;  // -name, "" without
  // Process start time (/proc/PID/stat field 22, clock ticks since host boot): a
  // recycled pid with another start time is another VM.
  uint64_t start_time = 0;
  char state = '?';                    // /proc/PID/stat's (R, S, D, ...)
  std::optional<QemuCmdline> cmdline;  // empty when QEMU's argv did not parse
  std::string cmdline_error;           // why, then
};

// Process `pid`, if it is a QEMU (its argv[0] or comm says qemu or kvm). Errors:
// not_found ("no such process", "has exited": a zombie), invalid_argument ("not a QEMU").
Result<QemuProcessInfo> read_qemu_process(pid_t pid);

// All QEMU processes visible in /proc but this one, by pid: the one /proc scan that
// discovery, TARGET resolution (qemu:NAME) and liveness checks share.
std::vector<QemuProcessInfo> list_qemu_processes();

// The one process in `processes` started with -name NAME (or guest=NAME). Errors:
// not_found, mismatch (several match).
Result<pid_t> find_qemu_by_name(std::string_view name,
                                const std::vector<QemuProcessInfo>& processes);
// The same over a fresh scan.
Result<pid_t> find_qemu_by_name(std::string_view name);

}  // namespace nfm
