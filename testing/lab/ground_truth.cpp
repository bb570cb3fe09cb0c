#include "ground_truth.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <sstream>

namespace nfm::lab {
namespace {

constexpr std::string_view kMarker = "==NFM== ";

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) i++;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') j++;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

template <typename T>
T to_num(std::string_view s, int base = 10, T fallback = 0) {
  T v{};
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  return ec == std::errc() ? v : fallback;
}

// "Key:\tvalue" lines (status, fdinfo) -> the value of `key`, or "".
std::string_view field(std::string_view text, std::string_view key) {
  for (auto line : split_lines(text)) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      auto v = line.substr(key.size() + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      return v;
    }
  }
  return {};
}

// A section by reference ("" if absent): the views split out of it must stay valid.
const std::string& sec(const GroundTruth& t, std::string_view name) {
  static const std::string empty;
  const std::string* s = t.section(name);
  return s ? *s : empty;
}

std::string hex_decode(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(to_num<unsigned>(hex.substr(i, 2), 16)));
  return out;
}

// /proc/PID/stat: "pid (comm) S ppid ...". comm may hold spaces and parentheses.
void parse_stat(std::string_view stat, Process& p) {
  size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return;
  p.pid = to_num<int>(stat.substr(0, open));
  p.comm = std::string(stat.substr(open + 1, close - open - 1));
  auto f = split_ws(stat.substr(close + 1));  // f[0] = field 3 (state)
  auto at = [&](size_t field_no) {
    return field_no - 3 < f.size() ? f[field_no - 3] : std::string_view{};
  };
  if (!f.empty() && !f[0].empty()) p.state = f[0][0];
  p.ppid = to_num<int>(at(4));
  p.flags = to_num<uint32_t>(at(9));
  p.utime = to_num<uint64_t>(at(14));
  p.stime = to_num<uint64_t>(at(15));
  p.nice = to_num<int>(at(19));
  p.start_time = to_num<uint64_t>(at(22));
  p.kernel_thread = (p.flags & 0x00200000u) != 0;  // PF_KTHREAD
}

std::vector<std::string> split_nul(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find('\0', i);
    if (j == std::string::npos) j = s.size();
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

void parse_processes(GroundTruth& t) {
  for (auto line : split_lines(sec(t, "pids"))) {
    int pid = to_num<int>(line, 10, -1);
    if (pid <= 0) continue;
    std::string proc = "/proc/" + std::to_string(pid);
    const std::string* stat = t.section(proc + "/stat");
    if (!stat) continue;  // exited while the reporter listed /proc
    Process p;
    parse_stat(*stat, p);
    p.pid = pid;
    std::string status = sec(t, proc + "/status");
    p.tgid = to_num<int>(field(status, "Tgid"), 10, pid);
    auto uids = split_ws(field(status, "Uid")), gids = split_ws(field(status, "Gid"));
    if (uids.size() >= 2) p.uid = to_num<uint32_t>(uids[0]), p.euid = to_num<uint32_t>(uids[1]);
    if (gids.size() >= 2) p.gid = to_num<uint32_t>(gids[0]), p.egid = to_num<uint32_t>(gids[1]);
    p.vsz_kb = to_num<uint64_t>(field(status, "VmSize"));
    p.rss_kb = to_num<uint64_t>(field(status, "VmRSS"));
    p.args = split_nul(hex_decode(sec(t, "hex " + proc + "/cmdline")));
    for (auto l : split_lines(sec(t, proc + "/links"))) {
      if (l.substr(0, 7) == "exe -> ") p.exe = std::string(l.substr(7));
    }
    for (auto l : split_lines(sec(t, proc + "/fd"))) {
      size_t arrow = l.find(" -> ");
      if (arrow == std::string_view::npos) continue;
      int fd = to_num<int>(l.substr(0, arrow), 10, -1);
      if (fd < 0) continue;
      FdInfo info;
      info.target = std::string(l.substr(arrow + 4));
      if (const std::string* fdinfo = t.section(proc + "/fdinfo/" + std::to_string(fd))) {
        if (auto v = field(*fdinfo, "pos"); !v.empty()) info.pos = to_num<uint64_t>(v);
        if (auto v = field(*fdinfo, "flags"); !v.empty()) info.flags = to_num<uint32_t>(v, 8);
      }
      p.fds[fd] = std::move(info);
    }
    // Threads: every /proc/PID/task/TID/stat section of this process.
    std::string task_prefix = proc + "/task/";
    for (auto it = t.sections.lower_bound(task_prefix);
         it != t.sections.end() && it->first.starts_with(task_prefix); ++it) {
      if (!it->first.ends_with("/stat")) continue;
      Process tp;
      parse_stat(it->second, tp);
      Thread th{tp.pid, pid, tp.comm, tp.state};
      p.tids.push_back(th.tid);
      t.threads[th.tid] = th;
    }
    std::sort(p.tids.begin(), p.tids.end());
    t.processes[pid] = std::move(p);
  }
}

void parse_inet(GroundTruth& t, const char* proto) {
  auto lines = split_lines(sec(t, std::string("/proc/net/") + proto));
  for (size_t i = 1; i < lines.size(); i++) {  // line 0 is the header
    auto f = split_ws(lines[i]);
    if (f.size() < 10) continue;
    InetSocket s;
    s.proto = proto;
    auto endpoint = [](std::string_view ep, std::string& addr, uint16_t& port) {
      size_t colon = ep.find(':');
      addr = proc_net_address(ep.substr(0, colon));
      port = colon == std::string_view::npos ? 0 : to_num<uint16_t>(ep.substr(colon + 1), 16);
    };
    endpoint(f[1], s.local_addr, s.local_port);
    endpoint(f[2], s.remote_addr, s.remote_port);
    s.state = to_num<int>(f[3], 16);
    s.uid = to_num<uint32_t>(f[7]);
    s.inode = to_num<uint64_t>(f[9]);
    t.inet_sockets.push_back(std::move(s));
  }
}

void parse_unix(GroundTruth& t) {
  auto lines = split_lines(sec(t, "/proc/net/unix"));
  for (size_t i = 1; i < lines.size(); i++) {
    // "Num RefCount Protocol Flags Type St Inode [Path]"
    auto f = split_ws(lines[i]);
    if (f.size() < 7) continue;
    UnixSocket s;
    s.flags = to_num<uint32_t>(f[3], 16);
    s.type = to_num<int>(f[4], 16);
    s.state = to_num<int>(f[5], 16);
    s.inode = to_num<uint64_t>(f[6]);
    if (f.size() > 7) s.path = std::string(f[7]);
    t.unix_sockets.push_back(std::move(s));
  }
}

// The reporter's "ifaddrs" section: "NAME index=N link MAC flags=0xF" and "NAME inet A/P".
void parse_interfaces(GroundTruth& t) {
  auto get = [&](std::string_view name) -> Interface& {
    for (auto& i : t.interfaces)
      if (i.name == name) return i;
    t.interfaces.push_back(Interface{std::string(name)});
    return t.interfaces.back();
  };
  for (auto line : split_lines(sec(t, "ifaddrs"))) {
    auto f = split_ws(line);
    if (f.size() < 3) continue;
    Interface& i = get(f[0]);
    if (f[1].starts_with("index=")) {
      i.index = to_num<int>(f[1].substr(6));
      if (f.size() > 3) i.mac = std::string(f[3]);
      if (f.size() > 4 && f[4].starts_with("flags=0x"))
        i.flags = to_num<uint32_t>(f[4].substr(8), 16);
    } else if (f[1] == "inet") {
      i.inet.emplace_back(f[2]);
    } else if (f[1] == "inet6") {
      i.inet6.emplace_back(f[2]);
    }
  }
}

void parse_misc(GroundTruth& t) {
  for (auto line : split_lines(sec(t, "uname"))) {
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    auto key = line.substr(0, eq);
    std::string value(line.substr(eq + 1));
    if (key == "sysname")
      t.uname.sysname = value;
    else if (key == "nodename")
      t.uname.nodename = value;
    else if (key == "release")
      t.uname.release = value;
    else if (key == "version")
      t.uname.version = value;
    else if (key == "machine")
      t.uname.machine = value;
    else if (key == "domainname")
      t.uname.domainname = value;
  }
  auto host = split_lines(sec(t, "hostname"));
  if (!host.empty()) t.hostname = std::string(host[0]);
  for (auto line : split_lines(sec(t, "/proc/modules"))) {
    auto f = split_ws(line);
    if (!f.empty()) t.modules.emplace_back(f[0]);
  }
  for (auto line : split_lines(sec(t, "kallsyms"))) {
    auto f = split_ws(line);
    if (f.size() >= 3) t.kallsyms[std::string(f[2])] = to_num<uint64_t>(f[0], 16);
  }
  for (auto line : split_lines(sec(t, "/dev/kmsg"))) {
    if (line.empty() || line[0] == ' ') continue;  // " KEY=value" continuation lines
    size_t semi = line.find(';');
    if (semi != std::string_view::npos) t.kmsg.emplace_back(line.substr(semi + 1));
  }
}

}  // namespace

std::string proc_net_address(std::string_view hex) {
  unsigned char bytes[16];
  size_t n = hex.size() / 8;  // 32-bit words, each printed in host (little-endian) order
  if ((n != 1 && n != 4) || hex.size() % 8) return std::string(hex);
  for (size_t w = 0; w < n; w++) {
    uint32_t v = to_num<uint32_t>(hex.substr(w * 8, 8), 16);
    std::memcpy(bytes + w * 4, &v, 4);
  }
  char out[INET6_ADDRSTRLEN] = "";
  inet_ntop(n == 1 ? AF_INET : AF_INET6, bytes, out, sizeof out);
  return out;
}

std::map<std::string, std::string, std::less<>> parse_sections(std::string_view text) {
  std::map<std::string, std::string, std::less<>> out;
  std::string name, content;
  bool inside = false;
  for (auto line : split_lines(text)) {
    if (line.starts_with(kMarker)) {
      auto rest = line.substr(kMarker.size());
      if (rest.starts_with("begin ")) {
        name = std::string(rest.substr(6));
        content.clear();
        inside = true;
        continue;
      }
      if (inside && rest.starts_with("end ") && rest.substr(4) == name) {
        out[name] = std::move(content);
        content.clear();
        inside = false;
        continue;
      }
    }
    if (inside) {
      content.append(line);
      content.push_back('\n');
    }
  }
  return out;
}

Result<GroundTruth> parse_ground_truth(std::string_view text) {
  // Find the last "ready N" with its "dump N" before it.
  size_t ready = text.rfind("==NFM== ready ");
  while (ready != std::string_view::npos && ready > 0 && text[ready - 1] != '\n')
    ready = text.rfind("==NFM== ready ", ready - 1);
  if (ready == std::string_view::npos)
    return make_error(Errc::bad_format, "no complete dump (no '==NFM== ready') in the text");
  auto seq_text = text.substr(ready + 14, text.find('\n', ready) - ready - 14);
  if (!seq_text.empty() && seq_text.back() == '\r') seq_text.remove_suffix(1);
  std::string dump_marker = "==NFM== dump " + std::string(seq_text) + "\n";
  size_t start = text.rfind(dump_marker, ready);
  if (start == std::string_view::npos) {
    dump_marker.insert(dump_marker.size() - 1, "\r");
    start = text.rfind(dump_marker, ready);
  }
  if (start == std::string_view::npos)
    return make_error(Errc::bad_format,
                      "'==NFM== ready " + std::string(seq_text) + "' without its dump start");
  GroundTruth t;
  t.seq = to_num<unsigned>(seq_text);
  t.sections = parse_sections(text.substr(start, ready - start));
  if (!t.section("uname") || !t.section("pids"))
    return make_error(Errc::bad_format, "dump lacks the uname or pids section");
  parse_misc(t);
  parse_processes(t);
  for (const char* proto : {"tcp", "tcp6", "udp", "udp6"}) parse_inet(t, proto);
  parse_unix(t);
  parse_interfaces(t);
  return t;
}

const std::string* GroundTruth::section(std::string_view name) const {
  auto it = sections.find(name);
  return it == sections.end() ? nullptr : &it->second;
}

std::string GroundTruth::section_or(std::string_view name, std::string fallback) const {
  const std::string* s = section(name);
  return s ? *s : std::move(fallback);
}

const Process* GroundTruth::find_process(std::string_view comm) const {
  for (auto& [pid, p] : processes)
    if (p.comm == comm) return &p;
  return nullptr;
}

std::vector<const Process*> GroundTruth::find_processes(std::string_view comm) const {
  std::vector<const Process*> out;
  for (auto& [pid, p] : processes)
    if (p.comm == comm) out.push_back(&p);
  return out;
}

const Interface* GroundTruth::find_interface(std::string_view name) const {
  for (auto& i : interfaces)
    if (i.name == name) return &i;
  return nullptr;
}

const Process* GroundTruth::process(int pid) const {
  auto it = processes.find(pid);
  return it == processes.end() ? nullptr : &it->second;
}

bool same_but_serial_doubles(std::string_view guest, std::string_view ours, size_t max_extra) {
  if (guest == ours) return true;
  if (guest.size() <= ours.size() || guest.size() - ours.size() > max_extra) return false;
  size_t g = 0, o = 0;
  while (g < guest.size()) {
    if (o < ours.size() && guest[g] == ours[o]) {
      ++g, ++o;
    } else if (g > 0 && guest[g] == guest[g - 1]) {
      ++g;  // the doubled byte
    } else {
      return false;
    }
  }
  return o == ours.size();
}

std::string stable_comm(const std::string& comm) {
  if (comm.rfind("kworker/", 0) != 0) return comm;
  // Rescuers ("kworker/R-NAME") carry the workqueue name in the worker part.
  const size_t from = comm.rfind("kworker/R-", 0) == 0 ? 10 : 8;
  return comm.substr(0, comm.find_first_of("+-", from));
}

}  // namespace nfm::lab
