#include "host/vm_host.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>

namespace nfm {

namespace {

// Small /proc files: one read() is the kernel's consistent snapshot of them.
std::optional<std::string> read_small(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (int i = 0; i < 64; ++i) {  // bounded: /proc/PID/status is ~1.5 KiB
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

template <typename T>
bool parse_number(std::string_view s, T& out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n'; };
    while (i < s.size() && space(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !space(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

uint64_t ticks_to_ns(uint64_t ticks) {
  static const long hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
  return ticks * (1'000'000'000ull / static_cast<uint64_t>(hz));
}

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t vm_rss_kb(std::string_view status) {
  const size_t at = status.find("\nVmRSS:");
  if (at == std::string_view::npos) return 0;
  std::string_view rest = status.substr(at + 7);
  rest = rest.substr(0, rest.find('\n'));
  const auto fields = split_spaces(rest);
  uint64_t kb = 0;
  if (!fields.empty()) parse_number(fields[0], kb);
  return kb;
}

}  // namespace

Result<SchedStat> parse_schedstat(std::string_view text) {
  const auto f = split_spaces(text);
  SchedStat s;
  if (f.size() < 3 || !parse_number(f[0], s.runtime_ns) || !parse_number(f[1], s.run_delay_ns) ||
      !parse_number(f[2], s.timeslices))
    return make_error(Errc::bad_format, "schedstat: expected three numbers");
  return s;
}

std::optional<VcpuName> parse_vcpu_thread_name(std::string_view comm) {
  while (!comm.empty() && comm.back() == '\n') comm.remove_suffix(1);
  if (comm.substr(0, 4) != "CPU ") return std::nullopt;
  comm.remove_prefix(4);
  const size_t slash = comm.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= comm.size())
    return std::nullopt;
  VcpuName v;
  if (!parse_number(comm.substr(0, slash), v.index) || v.index < 0) return std::nullopt;
  v.accel = std::string(comm.substr(slash + 1));
  return v;
}

Result<HostSample> sample_host(pid_t pid) {
  HostSample s;
  s.pid = pid;
  s.wall_ns = monotonic_ns();
  const std::string base = fmt::format("/proc/{}", pid);
  NFM_ASSIGN(const ProcStat stat, read_proc_stat(pid));
  s.process_cpu_ns = ticks_to_ns(stat.utime_ticks + stat.stime_ticks);
  if (auto status = read_small(base + "/status")) s.rss_kb = vm_rss_kb(*status);

  DIR* d = opendir((base + "/task").c_str());
  if (!d) return make_error(Errc::not_found, fmt::format("no process {} on this host", pid));
  size_t seen = 0;
  while (dirent* de = readdir(d)) {
    pid_t tid = 0;
    if (!parse_number(std::string_view(de->d_name), tid)) continue;
    if (++seen > 65536) break;  // bounded: QEMU has tens of threads
    const std::string dir = fmt::format("{}/task/{}", base, tid);
    auto comm = read_small(dir + "/comm");
    if (!comm) continue;  // thread exited
    auto name = parse_vcpu_thread_name(*comm);
    if (!name) continue;
    auto t_stat_text = read_small(dir + "/stat");
    auto t_stat =
        t_stat_text ? parse_proc_stat(*t_stat_text) : Result<ProcStat>(make_error(Errc::io, ""));
    if (!t_stat) {
      ++s.thread_errors;
      continue;
    }
    VcpuThread v{.tid = tid,
                 .index = name->index,
                 .accel = name->accel,
                 .cpu_ns = ticks_to_ns(t_stat->utime_ticks + t_stat->stime_ticks),
                 .processor = t_stat->processor};
    if (auto sched_text = read_small(dir + "/schedstat")) {
      if (auto sched = parse_schedstat(*sched_text)) v.sched = *sched;
    }
    s.vcpus.push_back(std::move(v));
  }
  closedir(d);
  std::sort(s.vcpus.begin(), s.vcpus.end(),
            [](const VcpuThread& a, const VcpuThread& b) { return a.index < b.index; });
  return s;
}

std::optional<HostUsage> host_usage(const HostSample& earlier, const HostSample& later) {
  if (earlier.pid != later.pid || later.wall_ns <= earlier.wall_ns) return std::nullopt;
  HostUsage u;
  const double wall = static_cast<double>(later.wall_ns - earlier.wall_ns);
  auto pct = [wall](uint64_t a, uint64_t b) {
    return b > a ? 100.0 * static_cast<double>(b - a) / wall : 0.0;
  };
  u.interval_s = wall / 1e9;
  u.qemu_cpu_pct = pct(earlier.process_cpu_ns, later.process_cpu_ns);
  u.rss_kb = later.rss_kb;
  u.vcpus = static_cast<int>(later.vcpus.size());
  bool all_sched = !later.vcpus.empty();
  double steal = 0;
  for (const VcpuThread& v : later.vcpus) {
    auto before = std::find_if(earlier.vcpus.begin(), earlier.vcpus.end(),
                               [&](const VcpuThread& e) { return e.tid == v.tid; });
    double p = 0;
    if (before != earlier.vcpus.end()) {
      // The exact runtime when the host keeps it; the tick-sampled split otherwise.
      if (v.sched && before->sched) {
        p = pct(before->sched->runtime_ns, v.sched->runtime_ns);
        steal += pct(before->sched->run_delay_ns, v.sched->run_delay_ns);
      } else {
        p = pct(before->cpu_ns, v.cpu_ns);
        all_sched = false;
      }
    } else {
      all_sched = false;  // a vCPU thread that appeared in between (hotplug)
    }
    if (u.per_vcpu_pct.size() <= static_cast<size_t>(v.index))
      u.per_vcpu_pct.resize(static_cast<size_t>(v.index) + 1, 0.0);
    u.per_vcpu_pct[static_cast<size_t>(v.index)] = p;
    u.vcpu_pct += p;
  }
  u.vcpus_named = !later.vcpus.empty();
  if (!u.vcpus_named) u.vcpu_pct = u.qemu_cpu_pct;
  if (all_sched) u.steal_pct = steal;
  return u;
}

}  // namespace nfm
