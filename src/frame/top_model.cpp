#include "frame/top_model.h"

#include <algorithm>
#include <unordered_map>

namespace nfm {

namespace {

constexpr std::string_view kColumnNames[kTopColumns] = {"VM",   "PID",   "USER",   "PR",   "NI",
                                                        "VIRT", "RES",   "S",      "%CPU", "%HOST",
                                                        "%MEM", "TIME+", "COMMAND"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A task's identity across crawls: its pid and start time (a pid reused by a newer
// task is a new task). Frames read back from a store carry these, not task addresses.
struct TaskKey {
  int32_t pid;
  uint64_t start;
  bool operator==(const TaskKey&) const = default;
};
struct TaskKeyHash {
  size_t operator()(const TaskKey& k) const {
    return std::hash<uint64_t>()(k.start * 1000003u ^ static_cast<uint64_t>(k.pid));
  }
};

// CPU time as the crawl knows it: the exact runtime when present (live crawls),
// else utime + stime (what /proc/PID/stat and stored frames show).
uint64_t cpu_ns(const ProcessRow& r) {
  return r.runtime_ns ? r.runtime_ns : r.utime_ns + r.stime_ns;
}

// The guest's clock when the crawl ran: the process list's own (live crawls),
// else the uptime feature's CLOCK_BOOTTIME (stored frames); 0 if neither.
uint64_t guest_clock(const Frame& f) {
  if (f.get<ProcessList>() && f.get<ProcessList>()->clock_ns) return f.get<ProcessList>()->clock_ns;
  return f.get<UptimeInfo>() ? f.get<UptimeInfo>()->uptime_ns : 0;
}

// Each task's CPU time gained since `earlier` and its share of one CPU over the
// guest time elapsed, as measure_cpu_over_interval computes it (a task born in
// between counts from its start).
struct Gain {
  uint64_t ns = 0;
  double pct = 0;
};
std::vector<Gain> cpu_gained(const std::vector<ProcessRow>& later, uint64_t later_clock,
                             const std::vector<ProcessRow>& earlier, uint64_t earlier_clock) {
  std::unordered_map<TaskKey, uint64_t, TaskKeyHash> before;
  for (const ProcessRow& r : earlier) before[{r.pid, r.start_time_ns}] = cpu_ns(r);
  std::vector<Gain> out(later.size());
  for (size_t i = 0; i < later.size(); ++i) {
    const ProcessRow& r = later[i];
    uint64_t gained = cpu_ns(r), since = std::max(earlier_clock, r.start_time_ns);
    auto it = before.find({r.pid, r.start_time_ns});
    if (it != before.end()) {
      gained = cpu_ns(r) > it->second ? cpu_ns(r) - it->second : 0;
      since = earlier_clock;
    } else if (r.start_time_ns < earlier_clock) {
      gained = 0;  // missed by the earlier crawl (a bad read): no interval to measure
    }
    out[i].ns = gained;
    if (later_clock > since)
      out[i].pct = 100.0 * static_cast<double>(gained) / static_cast<double>(later_clock - since);
  }
  return out;
}

}  // namespace

std::string_view top_column_name(TopColumn column) {
  return kColumnNames[static_cast<int>(column)];
}

std::optional<TopColumn> parse_top_column(std::string_view name) {
  const std::string n = lower(name);
  for (int i = 0; i < kTopColumns; ++i)
    if (n == lower(kColumnNames[i])) return static_cast<TopColumn>(i);
  if (n == "cpu") return TopColumn::cpu;
  if (n == "host") return TopColumn::host;
  if (n == "mem") return TopColumn::mem;
  if (n == "time") return TopColumn::time;
  if (n == "uid") return TopColumn::user;
  if (n == "state") return TopColumn::s;
  if (n == "comm" || n == "name") return TopColumn::command;
  return std::nullopt;
}

std::string process_command_text(const ProcessRow& r) {
  std::string text;
  for (const std::string& arg : r.cmdline) {
    if (!text.empty()) text += ' ';
    for (char c : arg) text += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text.empty() ? "[" + r.comm + "]" : text;
}

void add_to_view(TopView& view, const TopSample* earlier, const TopSample& later_sample) {
  const Frame& f = later_sample.frame;
  TopVm vm;
  vm.name = !f.meta.vm.name.empty() ? f.meta.vm.name : f.meta.target;
  vm.host = f.meta.vm.host;
  vm.qemu_pid = f.meta.vm.pid;
  vm.crawl_ns = f.meta.duration_ns;
  for (const auto& [feature, status] : f.meta.features) {
    if (!status.ok)
      vm.problems.push_back(std::string(feature_name(feature)) + ": " + status.error);
    else if (status.partial())
      vm.problems.push_back(std::string(feature_name(feature)) + ": partial");
  }
  if (const IntegrityReport* integrity = f.get<IntegrityReport>())
    for (const IntegrityFinding& finding : integrity->findings)
      vm.findings.push_back(
          fmt::format("{}: {}: {}", finding.severity, finding.kind, finding.summary));
  if (f.get<UptimeInfo>()) {
    vm.uptime_ns = f.get<UptimeInfo>()->uptime_ns;
    vm.load = std::array<double, 3>{f.get<UptimeInfo>()->load_centi[0] / 100.0,
                                    f.get<UptimeInfo>()->load_centi[1] / 100.0,
                                    f.get<UptimeInfo>()->load_centi[2] / 100.0};
  }
  if (const MemInfo* m = f.get<MemInfo>()) vm.mem = *m;
  if (f.get<CpuList>() && !f.get<CpuList>()->rows.empty())
    vm.cpus = static_cast<int>(f.get<CpuList>()->rows.size());
  else if (later_sample.host && !later_sample.host->vcpus.empty())
    vm.cpus = static_cast<int>(later_sample.host->vcpus.size());
  else
    vm.cpus = 1;
  if (earlier && earlier->host && later_sample.host)
    vm.host_usage = host_usage(*earlier->host, *later_sample.host);

  if (!f.get<ProcessList>()) {
    view.vms.push_back(std::move(vm));
    return;
  }
  ProcessList list = *f.get<ProcessList>();  // cpu_pct is rewritten below
  const ProcessList* before =
      earlier && earlier->frame.get<ProcessList>() ? &*earlier->frame.get<ProcessList>() : nullptr;
  std::vector<Gain> gained;
  uint64_t busy_ns = 0;
  if (before) {
    const uint64_t t0 = guest_clock(earlier->frame), t1 = guest_clock(f);
    if (t0 && t1 > t0) {
      gained = cpu_gained(list.rows, t1, before->rows, t0);
      for (size_t i = 0; i < list.rows.size(); ++i) {
        list.rows[i].cpu_pct = gained[i].pct;
        busy_ns += gained[i].ns;
      }
      vm.interval_s = static_cast<double>(t1 - t0) / 1e9;
    } else {
      // The guest's clock did not move (paused) or is unreadable: nothing ran.
      for (ProcessRow& r : list.rows) r.cpu_pct = 0;
    }
  }
  const double mem_total = vm.mem && vm.mem->total_kb ? static_cast<double>(vm.mem->total_kb) : 0;
  double cpu_sum = 0;
  for (size_t i = 0; i < list.rows.size(); ++i) {
    const ProcessRow& r = list.rows[i];
    ++vm.tasks.total;
    switch (r.state) {
      case 'R':
        ++vm.tasks.running;
        break;
      case 'T':
      case 't':
        ++vm.tasks.stopped;
        break;
      case 'Z':
        ++vm.tasks.zombie;
        break;
      default:
        ++vm.tasks.sleeping;
        break;  // S, D, I (idle kernel threads), ...
    }
    TopRow row{.vm = vm.name,
               .pid = r.tgid ? r.tgid : r.pid,
               .uid = r.uid,
               .prio = r.prio,
               .nice = r.nice,
               .virt_kb = r.vsz_kb,
               .res_kb = r.rss_kb,
               .state = r.state,
               .cpu_pct = r.cpu_pct,
               .mem_pct = mem_total > 0 ? 100.0 * static_cast<double>(r.rss_kb) / mem_total : 0,
               .time_ns = r.utime_ns + r.stime_ns,
               .comm = r.comm,
               .command = process_command_text(r)};
    cpu_sum += r.cpu_pct;
    if (vm.host_usage && before) {
      // The VM's host CPU, split over its tasks by the CPU time each used (all of it
      // to nobody when nothing ran in the guest).
      const double share =
          busy_ns && i < gained.size() ? static_cast<double>(gained[i].ns) / busy_ns : 0.0;
      row.host_pct = share * vm.host_usage->vcpu_pct;
    }
    view.rows.push_back(std::move(row));
  }
  if (before) vm.cpu_busy_pct = cpu_sum / std::max(vm.cpus, 1);
  view.vms.push_back(std::move(vm));
}

void sort_rows(std::vector<TopRow>& rows, TopColumn column, bool reverse) {
  auto key_less = [column](const TopRow& a, const TopRow& b) -> int {
    // -1: a first, 1: b first, 0: tie
    auto num = [](double x, double y) { return x > y ? -1 : x < y ? 1 : 0; };  // largest first
    auto text = [](const std::string& x, const std::string& y) {
      return x < y ? -1 : x > y ? 1 : 0;
    };
    switch (column) {
      case TopColumn::vm:
        return text(a.vm, b.vm);
      case TopColumn::pid:
        return a.pid < b.pid ? -1 : a.pid > b.pid ? 1 : 0;  // like top's N: ascending
      case TopColumn::user:
        return a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0;
      case TopColumn::pr:
        return num(a.prio, b.prio);
      case TopColumn::ni:
        return num(a.nice, b.nice);
      case TopColumn::virt:
        return num(static_cast<double>(a.virt_kb), static_cast<double>(b.virt_kb));
      case TopColumn::res:
        return num(static_cast<double>(a.res_kb), static_cast<double>(b.res_kb));
      case TopColumn::s:
        return a.state < b.state ? -1 : a.state > b.state ? 1 : 0;
      case TopColumn::cpu:
        return num(a.cpu_pct, b.cpu_pct);
      case TopColumn::host:
        return num(a.host_pct.value_or(-1), b.host_pct.value_or(-1));
      case TopColumn::mem:
        return num(a.mem_pct, b.mem_pct);
      case TopColumn::time:
        return num(static_cast<double>(a.time_ns), static_cast<double>(b.time_ns));
      case TopColumn::command:
        return text(a.command, b.command);
    }
    return 0;
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const TopRow& a, const TopRow& b) {
    int k = key_less(a, b);
    if (k != 0) return reverse ? k > 0 : k < 0;
    if (a.vm != b.vm) return a.vm < b.vm;
    return a.pid < b.pid;
  });
}

void filter_rows(std::vector<TopRow>& rows, const TopFilter& filter) {
  if (filter.empty()) return;
  std::erase_if(rows, [&](const TopRow& r) {
    if (!filter.vm.empty() && r.vm.find(filter.vm) == std::string::npos) return true;
    if (!filter.name.empty() && r.comm.find(filter.name) == std::string::npos &&
        r.command.find(filter.name) == std::string::npos)
      return true;
    return false;
  });
}

void filter_view(TopView& view, const TopFilter& filter) {
  filter_rows(view.rows, filter);
  if (!filter.vm.empty())
    std::erase_if(view.vms,
                  [&](const TopVm& vm) { return vm.name.find(filter.vm) == std::string::npos; });
}

}  // namespace nfm
