#include "apps/format.h"

#include <fmt/core.h>
#include <fmt/format.h>

#include <cstdio>
#include <ctime>
#include <iterator>

#include "features/memory_maps/memory_maps.h"
#include "features/modules/modules.h"
#include "frame/frame_json.h"

namespace nfm::app {

namespace {

void put_json(Output& o, const nlohmann::json& j) {
  o.out += dump_json(j) + "\n";
}

// COMMAND as ps shows it: the arguments joined by spaces with control bytes as
// '?', or "[name]" when there are none (kernel threads, exited processes).
std::string command_text(const ProcessRow& r) {
  std::string text;
  for (const std::string& arg : r.cmdline) {
    if (!text.empty()) text += ' ';
    for (char c : arg) text += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text.empty() ? "[" + r.comm + "]" : text;
}

// ps's TIME in `ps aux`: cumulative CPU time as M:SS.
std::string cpu_time_text(uint64_t ns) {
  const uint64_t s = ns / kNsPerSec;
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

// ps's START: the guest's wall clock (UTC) at the task's start, HH:MM within
// the last day, else MonDD. "-" when the guest's boot time is unknown.
std::string start_text(uint64_t start_ns, uint64_t now_ns, int64_t boot_time) {
  if (boot_time <= 0) return "-";
  const std::time_t t =
      static_cast<std::time_t>(boot_time + static_cast<int64_t>(start_ns / kNsPerSec));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[16];
  const bool today = now_ns < start_ns + uint64_t{24} * 3600 * kNsPerSec;
  std::strftime(out, sizeof out, today ? "%H:%M" : "%b%d", &tm);
  return out;
}

void warn_walk(Output& o, const char* what, const WalkResult& walk) {
  if (!walk.ok())
    put(o.err, "nfm: warning: {} walk ended early ({}): the list may be incomplete\n", what,
        walk_end_name(walk.end));
}

void print_interface(std::string& s, const InterfaceRow& r) {
  const ProcNetDevCounters c = proc_net_dev_counters(r.stats);
  put(s, "{}: flags={}<{}>  mtu {}  index {}\n", r.name, r.flags, interface_flag_names(r.flags),
      r.mtu, r.ifindex);
  for (const std::string& a : r.ipv4) put(s, "        inet {}\n", a);
  for (const std::string& a : r.ipv6) put(s, "        inet6 {}\n", a);
  if (!r.mac.empty()) put(s, "        ether {}\n", r.mac);
  put(s, "        RX packets {}  bytes {}\n", c.rx_packets, c.rx_bytes);
  put(s, "        RX errors {}  dropped {}  overruns {}  frame {}\n", c.rx_errs, c.rx_drop,
      c.rx_fifo, c.rx_frame);
  put(s, "        TX packets {}  bytes {}\n", c.tx_packets, c.tx_bytes);
  put(s, "        TX errors {}  dropped {}  overruns {}  carrier {}  collisions {}\n", c.tx_errs,
      c.tx_drop, c.tx_fifo, c.tx_carrier, c.tx_colls);
  if (!r.stats_exact) put(s, "        (counters not exact: {})\n", r.stats_note);
  put(s, "\n");
}

// netstat -n: "127.0.0.1:7001", ":::7002", "0.0.0.0:*" (port 0 is "*").
std::string endpoint(const std::string& addr, uint16_t port) {
  return addr + ":" + (port ? std::to_string(port) : "*");
}

std::string program(const SocketRow& r) {
  return r.pid ? fmt::format("{}/{}", r.pid, r.comm) : "-";
}

bool shown(const SocketRow& r, const NetstatFilter& f) {
  if (r.proto == "unix") return f.unix_sockets;
  if (r.proto.starts_with("tcp")) return f.tcp;
  if (r.proto.starts_with("udp")) return f.udp;
  return true;
}

void warn_table(Output& o, const char* table, const HashWalk& w) {
  if (!w.read)
    put(o.err, "nfm: warning: the {} table could not be read\n", table);
  else if (!w.ok())
    put(o.err, "nfm: warning: {} of the {} table's chains ended early ({})\n", w.broken_chains,
        table, walk_end_name(w.first_error));
}

}  // namespace

void format_ps(Output& o, const ProcessList& list, const PsFormat& f) {
  std::vector<ProcessRow> picked;
  const std::vector<ProcessRow>* rows = &list.rows;
  if (f.pid) {
    for (const ProcessRow& r : list.rows)
      if (r.tgid == *f.pid) picked.push_back(r);
    rows = &picked;
  }
  if (f.json) {
    put_json(o, schema::rows_json(process_fields(), *rows));
  } else {
    put(o.out, "{:>5} {:>7} {:>7} {:>7} {:1} {:>3} {:>3} {:>4} {:>5} {:>7} {:>5} {:>9} {:>8} {}\n",
        "UID", "PID", "TGID", "PPID", "S", "NI", "PRI", "THR", "%CPU", "TIME", "START", "VSZ",
        "RSS", "COMMAND");
    for (const ProcessRow& r : *rows)
      put(o.out,
          "{:>5} {:>7} {:>7} {:>7} {:1} {:>3} {:>3} {:>4} {:>5.1f} {:>7} {:>5} {:>9} {:>8} {}\n",
          r.uid, r.pid, r.tgid, r.ppid, r.state, r.nice, r.prio, r.threads, r.cpu_pct,
          cpu_time_text(r.utime_ns + r.stime_ns),
          start_text(r.start_time_ns, list.clock_ns, f.boot_time), r.vsz_kb, r.rss_kb,
          command_text(r));
  }
  warn_walk(o, "task list", list.walk);
  if (list.row_errors) put(o.err, "nfm: warning: {} tasks could not be read\n", list.row_errors);
  if (list.thread_walk_errors)
    put(o.err, "nfm: warning: {} thread lists could not be read in full\n",
        list.thread_walk_errors);
  if (list.memory_errors)
    put(o.err, "nfm: warning: the memory of {} processes could not be read\n", list.memory_errors);
  if (list.cmdline_errors)
    put(o.err, "nfm: warning: {} command lines could not be read in full\n", list.cmdline_errors);
  if (list.cmdline_truncated)
    put(o.err, "nfm: warning: {} command lines were cut at {} bytes\n", list.cmdline_truncated,
        f.max_cmdline);
  if (list.exe_errors)
    put(o.err, "nfm: warning: {} executable paths could not be read\n", list.exe_errors);
  if (!list.clock_ns) put(o.err, "nfm: warning: the guest's clock is unreadable: cpu_pct is 0\n");
}

void format_lsmod(Output& o, const ModuleList& list, bool json) {
  if (json) {
    put_json(o, schema::rows_json(module_fields(), list.rows));
  } else {
    for (const ModuleRow& r : list.rows) put(o.out, "{}\n", proc_modules_line(r));
  }
  warn_walk(o, "module list", list.walk);
  if (list.row_errors) put(o.err, "nfm: warning: {} modules could not be read\n", list.row_errors);
  if (list.user_walk_errors)
    put(o.err, "nfm: warning: {} modules' user lists ended early\n", list.user_walk_errors);
}

schema::json check_json(const IntegrityReport& report) {
  schema::json checks = schema::json::array();
  for (const IntegrityCheck& c : report.checks)
    checks.push_back({{"name", c.name},
                      {"status", c.status},
                      {"detail", c.detail},
                      {"findings", c.findings},
                      {"duration_ns", c.duration_ns}});
  return {{"findings", schema::rows_json(integrity_fields(), report.findings)}, {"checks", checks}};
}

void format_check(Output& o, const IntegrityReport& report, bool json) {
  if (json) {
    put_json(o, check_json(report));
    return;
  }
  if (!report.checks.empty())
    put(o.out, "{:<16} {:<13} {:>8} {:>10}  {}\n", "CHECK", "STATUS", "FINDINGS", "TIME", "DETAIL");
  for (const IntegrityCheck& c : report.checks)
    put(o.out, "{:<16} {:<13} {:>8} {:>7.1f} ms  {}\n", c.name, c.status, c.findings,
        static_cast<double>(c.duration_ns) / 1e6, c.detail);
  for (const IntegrityFinding& f : report.findings)
    put(o.out, "{}: {}: {}\n", f.severity, f.kind, f.summary);
  if (report.checks.empty() && report.findings.empty()) put(o.out, "no findings\n");
}

void format_dmesg(Output& o, const KmsgLog& log, bool json) {
  if (json) {
    put_json(o, schema::rows_json(kmsg_fields(), log.records));
  } else {
    for (const KmsgRecord& r : log.records) {
      // The kernel's own syslog format: every line of a record gets the prefix.
      const std::string prefix =
          fmt::format("[{:5}.{:06}] ", r.ts_ns / 1000000000, r.ts_ns % 1000000000 / 1000);
      size_t start = 0;
      do {
        const size_t end = r.text.find('\n', start);
        put(o.out, "{}{}\n", prefix, std::string_view(r.text).substr(start, end - start));
        start = end == std::string::npos ? end : end + 1;
      } while (start != std::string::npos);
    }
  }
  if (log.in_flight || log.torn || log.unreadable)
    put(o.err,
        "nfm: warning: {} records skipped ({} being written, {} inconsistent, {} unreadable)\n",
        log.in_flight + log.torn + log.unreadable, log.in_flight, log.torn, log.unreadable);
}

void format_uname(Output& o, const UnameInfo& u, bool json) {
  if (json)
    put_json(o, uname_fields().write(u));
  else
    put(o.out, "{} {} {} {} {}\n", u.sysname, u.nodename, u.release, u.version, u.machine);
}

void format_uptime(Output& o, const UptimeInfo& u, bool json) {
  if (json) return put_json(o, uptime_fields().write(u));
  const double load[3] = {u.load_centi[0] / 100.0, u.load_centi[1] / 100.0,
                          u.load_centi[2] / 100.0};
  const uint64_t s = u.uptime_ns / kNsPerSec;
  put(o.out, "up {} days, {:02}:{:02}:{:02}, load average: {:.2f}, {:.2f}, {:.2f}\n", s / 86400,
      s / 3600 % 24, s / 60 % 60, s % 60, load[0], load[1], load[2]);
}

void format_meminfo(Output& o, const MemInfo& m, bool json) {
  if (json) return put_json(o, meminfo_fields().write(m));
  const std::pair<const char*, uint64_t> rows[] = {
      {"MemTotal:", m.total_kb},    {"MemFree:", m.free_kb},  {"MemAvailable:", m.available_kb},
      {"Buffers:", m.buffers_kb},   {"Cached:", m.cached_kb}, {"SwapTotal:", m.swap_total_kb},
      {"SwapFree:", m.swap_free_kb}};
  for (const auto& [label, kb] : rows) put(o.out, "{:<16}{:>8} kB\n", label, kb);
}

void format_cpuinfo(Output& o, const std::vector<CpuRow>& cpus, bool json) {
  if (json) return put_json(o, schema::rows_json(cpu_fields(), cpus));
  for (const CpuRow& c : cpus) {
    put(o.out, "processor\t: {}\nvendor_id\t: {}\ncpu family\t: {}\nmodel\t\t: {}\n", c.processor,
        c.vendor, c.family, c.model);
    put(o.out, "model name\t: {}\nstepping\t: {}\ncpu MHz\t\t: {}.{:03}\n", c.model_name,
        c.stepping, c.khz / 1000, c.khz % 1000);
    if (c.cache_kb >= 0) put(o.out, "cache size\t: {} KB\n", c.cache_kb);
    std::string flags;
    for (const std::string& f : c.flags) flags += " " + f;
    put(o.out, "flags\t\t:{}\n\n", flags);
  }
}

void format_ifconfig(Output& o, const InterfaceList& list, bool json) {
  if (json) {
    put_json(o, schema::rows_json(interface_fields(), list.rows));
  } else {
    for (const InterfaceRow& r : list.rows) print_interface(o.out, r);
  }
  warn_walk(o, "device list", list.walk);
  if (list.row_errors) put(o.err, "nfm: warning: {} devices could not be read\n", list.row_errors);
  if (list.address_errors)
    put(o.err, "nfm: warning: {} address lists could not be read completely\n",
        list.address_errors);
  for (const InterfaceRow& r : list.rows)
    if (!r.stats_exact)
      put(o.err, "nfm: warning: {}: counters are not exact ({})\n", r.name, r.stats_note);
}

void format_lsof(Output& o, const OpenFileList& list, std::optional<int32_t> pid, bool json) {
  std::vector<OpenFileRow> picked;
  const std::vector<OpenFileRow>* rows = &list.rows;
  if (pid) {
    for (const OpenFileRow& r : list.rows)
      if (r.pid == *pid) picked.push_back(r);
    rows = &picked;
  }
  if (json) {
    put_json(o, schema::rows_json(open_file_fields(), *rows));
  } else {
    put(o.out, "{:>7} {:<16} {:>5} {:<6} {:>10} {:>10} {:>9} {}\n", "PID", "COMMAND", "FD", "TYPE",
        "INODE", "POS", "FLAGS", "PATH");
    for (const OpenFileRow& r : *rows)
      put(o.out, "{:>7} {:<16} {:>5} {:<6} {:>10} {:>10} {:>9} {}\n", r.pid, r.comm, r.fd, r.type,
          r.inode, r.pos, fmt::format("0{:o}", r.flags), r.path);
  }
  warn_walk(o, "task list", list.walk);
  if (list.task_errors)
    put(o.err, "nfm: warning: {} processes' fd tables could not be read\n", list.task_errors);
  if (list.row_errors)
    put(o.err, "nfm: warning: {} open files could not be read\n", list.row_errors);
  if (list.truncated_tables)
    put(o.err, "nfm: warning: {} fd tables were larger than the bound\n", list.truncated_tables);
}

void format_maps(Output& o, const MemoryMapList& list, std::optional<int32_t> pid, bool pages,
                 bool json) {
  std::vector<MemoryMapRow> picked;
  const std::vector<MemoryMapRow>* rows = &list.rows;
  if (pid) {
    for (const MemoryMapRow& r : list.rows)
      if (r.pid == *pid) picked.push_back(r);
    rows = &picked;
  }
  if (json) {
    put_json(o, memory_maps_json(*rows, pages));
  } else {
    int32_t shown = -1;
    for (const MemoryMapRow& r : *rows) {
      if (r.pid != shown && !pid) put(o.out, "==> {} ({}) <==\n", r.pid, r.comm);
      shown = r.pid;
      put(o.out, "{}\n", proc_maps_line(r));
      for (const MappedPage& p : r.pages)
        put(o.out, "    {:#x} -> {:#x} {}K{}\n", p.va, p.pa, p.size / 1024, p.writable ? " w" : "");
    }
  }
  warn_walk(o, "task list", list.walk);
  if (list.task_errors)
    put(o.err, "nfm: warning: {} processes' memory could not be read\n", list.task_errors);
  if (list.vma_walk_errors)
    put(o.err, "nfm: warning: {} processes' VMA walks ended early\n", list.vma_walk_errors);
  if (list.row_errors) put(o.err, "nfm: warning: {} maps could not be read\n", list.row_errors);
  if (list.page_errors)
    put(o.err, "nfm: warning: {} page-table walks were incomplete\n", list.page_errors);
}

void format_netstat(Output& o, const SocketList& list, const NetstatFilter& filter, bool json) {
  std::vector<SocketRow> rows;
  for (const SocketRow& r : list.rows)
    if (shown(r, filter)) rows.push_back(r);
  if (json) {
    put_json(o, schema::rows_json(socket_fields(), rows));
  } else {
    bool inet_header = false, unix_header = false;
    for (const SocketRow& r : rows) {
      if (r.proto != "unix") {
        if (!inet_header) {
          put(o.out, "Active Internet connections (servers and established)\n");
          put(o.out, "{:<5} {:>6} {:>6} {:<23} {:<23} {:<11} {}\n", "Proto", "Recv-Q", "Send-Q",
              "Local Address", "Foreign Address", "State", "PID/Program name");
          inet_header = true;
        }
        put(o.out, "{:<5} {:>6} {:>6} {:<23} {:<23} {:<11} {}\n", r.proto, r.rx_queue, r.tx_queue,
            endpoint(r.local_addr, r.local_port), endpoint(r.remote_addr, r.remote_port), r.state,
            program(r));
        continue;
      }
      if (!unix_header) {
        put(o.out, "Active UNIX domain sockets (servers and established)\n");
        put(o.out, "{:<5} {:<6} {:<11} {:<10} {:<13} {:<8} {:<20} {}\n", "Proto", "RefCnt", "Flags",
            "Type", "State", "I-Node", "PID/Program name", "Path");
        unix_header = true;
      }
      const std::string flags = (r.flags & 0x10000) ? "[ ACC ]" : "[ ]";
      put(o.out, "{:<5} {:<6} {:<11} {:<10} {:<13} {:<8} {:<20} {}\n", r.proto, r.refcount, flags,
          r.type, r.state, r.inode, program(r), r.path);
    }
  }
  if (filter.tcp) {
    warn_table(o, "TCP listening", list.tcp_listen);
    warn_table(o, "TCP established", list.tcp_established);
  }
  if (filter.udp) warn_table(o, "UDP", list.udp);
  if (filter.unix_sockets) warn_table(o, "UNIX", list.unix_table);
  if (list.row_errors) put(o.err, "nfm: warning: {} sockets could not be read\n", list.row_errors);
  if (list.inode_errors)
    put(o.err, "nfm: warning: {} sockets' inodes could not be read\n", list.inode_errors);
  if (!list.owners_error.empty())
    put(o.err, "nfm: warning: socket owners unknown: {}\n", list.owners_error);
  else if (list.owner_errors)
    put(o.err, "nfm: warning: {} fd tables or files could not be read\n", list.owner_errors);
}

void print(const Output& o) {
  std::fwrite(o.out.data(), 1, o.out.size(), stdout);
  std::fflush(stdout);
  std::fwrite(o.err.data(), 1, o.err.size(), stderr);
}

}  // namespace nfm::app
