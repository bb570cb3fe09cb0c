// The host's view of a VM: what its QEMU process actually got from the host, read
// from the host's own /proc/QEMU_PID. The guest's clock cannot see CPU time the
// host gave elsewhere (a VM capped at 30% of a core still sees its busy process at
// 100%); these numbers can.
//
// vCPU threads are the QEMU threads named "CPU N/KVM" or "CPU N/TCG", which QEMU
// names only with `-name ...,debug-threads=on` (libvirt always sets it). Without
// named threads the whole QEMU process stands in for the vCPUs (an upper bound:
// it includes device emulation and I/O threads).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/qemu/proc_stat.h"  // ProcStat, parse_proc_stat: the one /proc/PID/stat parser
#include "util/result.h"

namespace nfm {

// ---- Pure parsers (unit-tested) ----

// /proc/PID/task/TID/schedstat: "sum_exec_runtime run_delay pcount" (ns, ns, count).
struct SchedStat {
  uint64_t runtime_ns = 0;    // time on a CPU
  uint64_t run_delay_ns = 0;  // time runnable but waiting for a CPU (incl. CFS throttling)
  uint64_t timeslices = 0;
};
Result<SchedStat> parse_schedstat(std::string_view text);

// "CPU 3/KVM" -> {3, "KVM"}; anything else -> nullopt.
struct VcpuName {
  int index = 0;
  std::string accel;  // "KVM", "TCG", "HVF", ...
};
std::optional<VcpuName> parse_vcpu_thread_name(std::string_view comm);

// ---- Sampling ----

struct VcpuThread {
  pid_t tid = 0;
  int index = 0;
  std::string accel;
  uint64_t cpu_ns = 0;             // utime + stime (tick resolution)
  std::optional<SchedStat> sched;  // exact runtime and run delay (CONFIG_SCHEDSTATS/SCHED_INFO)
  int processor = -1;
};

struct HostSample {
  pid_t pid = 0;
  uint64_t wall_ns = 0;           // CLOCK_MONOTONIC when sampled
  uint64_t process_cpu_ns = 0;    // the whole QEMU process: utime + stime of all its threads
  uint64_t rss_kb = 0;            // QEMU's VmRSS (guest RAM it touched + its own memory)
  std::vector<VcpuThread> vcpus;  // by index; empty when threads are not named
  uint64_t thread_errors = 0;     // threads that vanished or could not be read mid-sample
};

// Reads /proc/PID/{stat,status} and every /proc/PID/task/TID/{comm,stat,schedstat}.
// Errors: not_found when the process is gone.
Result<HostSample> sample_host(pid_t pid);

// What the VM got between two samples of the same QEMU, in percent of one host CPU.
struct HostUsage {
  double interval_s = 0;             // host wall time between the samples
  double qemu_cpu_pct = 0;           // the whole QEMU process
  double vcpu_pct = 0;               // sum over vCPU threads (QEMU process when none are named)
  bool vcpus_named = false;          // false: vcpu_pct is the QEMU process (an upper bound)
  std::vector<double> per_vcpu_pct;  // by vCPU index (empty when not named)
  std::optional<double> steal_pct;   // vCPUs runnable but not running (sum over vCPUs)
  uint64_t rss_kb = 0;               // of the later sample
  int vcpus = 0;                     // named vCPU threads in the later sample
};

// nullopt when the samples are not of the same process or the wall clock did not move.
std::optional<HostUsage> host_usage(const HostSample& earlier, const HostSample& later);

}  // namespace nfm
