// The model behind `nfm top`: from two consecutive crawls of each VM (frames with
// uptime, meminfo, cpuinfo and processes) and, for a VM on this host, two samples
// of its QEMU process, compute what top shows per VM and per process, plus %HOST:
// the host CPU a guest process actually got. No printing here.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "features/cpuinfo/rows.h"
#include "features/integrity/rows.h"
#include "features/meminfo/rows.h"
#include "features/processes/rows.h"
#include "features/uptime/rows.h"
#include "frame/frame.h"
#include "host/vm_host.h"

namespace nfm {

// One crawl of one VM as top uses it: the frame and, for a local VM, the host's
// sample of its QEMU taken just before the crawl.
struct TopSample {
  Frame frame;
  std::optional<HostSample> host;
};

struct TopTasks {
  int total = 0, running = 0, sleeping = 0, stopped = 0, zombie = 0;
};

struct TopVm {
  std::string name;  // VmIdentity name (else the target)
  std::string host;  // the host it runs on (store frames), "" locally
  int64_t qemu_pid = 0;
  std::optional<uint64_t> uptime_ns;
  std::optional<std::array<double, 3>> load;  // 1, 5, 15 minutes
  TopTasks tasks;
  int cpus = 0;             // guest CPUs (cpuinfo rows; else vCPU threads; else 1)
  double interval_s = 0;    // guest time between the two crawls (0: first crawl)
  double cpu_busy_pct = 0;  // sum of task CPU over the interval / cpus
  std::optional<MemInfo> mem;
  std::optional<HostUsage> host_usage;  // local VMs, from the second sample on
  uint64_t crawl_ns = 0;                // how long the later crawl took
  std::vector<std::string> problems;    // features that failed or were partial
  std::vector<std::string> findings;    // integrity findings: "critical: kind: summary"
};

struct TopRow {
  std::string vm;
  int32_t pid = 0;
  uint32_t uid = 0;
  int32_t prio = 0, nice = 0;
  uint64_t virt_kb = 0, res_kb = 0;
  char state = '?';
  double cpu_pct = 0;  // % of one guest CPU over the interval, in guest time (lifetime at first)
  std::optional<double> host_pct;  // % of one host CPU (needs two host samples)
  double mem_pct = 0;              // RES / MemTotal
  uint64_t time_ns = 0;            // TIME+: utime + stime
  std::string comm;
  std::string command;  // arguments joined, or "[comm]" without any
};

// The columns, in display order.
enum class TopColumn { vm, pid, user, pr, ni, virt, res, s, cpu, host, mem, time, command };
inline constexpr int kTopColumns = 13;
std::string_view top_column_name(TopColumn column);  // "%CPU", "TIME+", ...
// Accepts a column name as top_column_name gives it or a lower-case alias (cpu, mem,
// time, pid, host, ...).
std::optional<TopColumn> parse_top_column(std::string_view name);

struct TopView {
  std::vector<TopVm> vms;
  std::vector<TopRow> rows;
};

// Adds one VM to `view`: its header, and a row per process of `later`. With
// `earlier` (the previous crawl of the same VM) %CPU is over the interval in the
// guest's clock; without, it is the lifetime average (like ps). %HOST is each
// process's share of the CPU time its guest's tasks used over the interval,
// times the host CPU the VM's vCPU threads got over (about) the same interval.
void add_to_view(TopView& view, const TopSample* earlier, const TopSample& later);

// Sorts rows by `column` (numbers: largest first; text: A-Z), ties by VM and pid.
void sort_rows(std::vector<TopRow>& rows, TopColumn column, bool reverse = false);

// Keeps rows whose VM name contains `vm` and whose comm or command contains `name`
// (empty: any).
struct TopFilter {
  std::string vm, name;
  bool empty() const { return vm.empty() && name.empty(); }
};
void filter_rows(std::vector<TopRow>& rows, const TopFilter& filter);
// filter_rows, and the VM headers whose name does not contain filter.vm go too.
void filter_view(TopView& view, const TopFilter& filter);

// COMMAND text: arguments joined by spaces, control bytes as '?', or "[comm]".
std::string process_command_text(const ProcessRow& row);

}  // namespace nfm
