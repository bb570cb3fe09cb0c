#include "host/qemu/processes.h"

#include <dirent.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "host/qemu/proc_stat.h"
#include "memory/mapped_file.h"  // errno_error

namespace nfm {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return errno_error(errno, "open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return errno_error(errno, "read " + path);
  return ss.str();
}

std::vector<std::string> split_nul(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\0', start);
    if (end == std::string::npos) end = s.size();
    out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string basename_of(std::string_view p) {
  const size_t slash = p.rfind('/');
  return std::string(slash == std::string_view::npos ? p : p.substr(slash + 1));
}

bool looks_like_qemu(const std::string& comm, const std::string& argv0) {
  const std::string exe = basename_of(argv0);
  return comm.find("qemu") != std::string::npos || exe.find("qemu") != std::string::npos ||
         exe == "kvm" || comm == "kvm";
}

}  // namespace

Result<QemuProcessInfo> read_qemu_process(pid_t pid) {
  const std::string proc = fmt::format("/proc/{}", pid);
  struct stat st;
  if (pid <= 0 || stat(proc.c_str(), &st) != 0)
    return make_error(Errc::not_found, fmt::format("no such process {}", pid));
  auto comm = read_text_file(proc + "/comm");
  auto cmdline = read_text_file(proc + "/cmdline");
  if (!comm || !cmdline) return make_error(Errc::not_found, fmt::format("no such process {}", pid));
  // A QEMU that exited but is not reaped yet (a zombie) has no memory left: its maps
  // read as empty, which would otherwise look like missing ptrace permission.
  auto stat_fields = read_proc_stat(pid);
  if (stat_fields && stat_fields->exited())
    return make_error(Errc::not_found, fmt::format("process {} has exited", pid));
  const auto argv = split_nul(*cmdline);
  const std::string comm_text(trim(*comm));
  if (!looks_like_qemu(comm_text, argv.empty() ? "" : argv[0]))
    return make_error(Errc::invalid_argument,
                      fmt::format("process {} is not a QEMU (comm={})", pid, comm_text));
  QemuProcessInfo info;
  info.pid = pid;
  if (stat_fields) {
    info.start_time = stat_fields->start_time;
    info.state = stat_fields->state;
  }
  auto parsed = parse_qemu_cmdline(argv);
  if (parsed) {
    info.name = parsed->name;
    info.cmdline = std::move(parsed).value();
  } else {
    info.cmdline_error = parsed.error().to_string();
  }
  return info;
}

std::vector<QemuProcessInfo> list_qemu_processes() {
  std::vector<QemuProcessInfo> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* de = readdir(d)) {
    pid_t pid = 0;
    const char* n = de->d_name;
    auto r = std::from_chars(n, n + std::strlen(n), pid);
    if (r.ec != std::errc() || *r.ptr != '\0' || pid == getpid()) continue;
    // Cheap filter first: kernel threads have no argv, most processes are no QEMU.
    auto cmd = read_text_file(fmt::format("/proc/{}/cmdline", pid));
    if (!cmd || cmd->empty()) continue;
    if (auto info = read_qemu_process(pid)) out.push_back(std::move(info).value());
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
  return out;
}

Result<pid_t> find_qemu_by_name(std::string_view name,
                                const std::vector<QemuProcessInfo>& processes) {
  std::vector<pid_t> hits;
  for (const auto& p : processes) {
    if (p.name == name) hits.push_back(p.pid);
  }
  if (hits.empty())
    return make_error(Errc::not_found, fmt::format("no QEMU process with -name {}", name));
  if (hits.size() > 1) {
    return make_error(Errc::mismatch, fmt::format("{} QEMU processes are named {} (pids {})",
                                                  hits.size(), name, fmt::join(hits, ", ")));
  }
  return hits[0];
}

Result<pid_t> find_qemu_by_name(std::string_view name) {
  return find_qemu_by_name(name, list_qemu_processes());
}

}  // namespace nfm
