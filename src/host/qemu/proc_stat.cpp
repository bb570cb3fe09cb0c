#include "host/qemu/proc_stat.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <vector>

namespace nfm {

namespace {

template <typename T>
bool parse_number(std::string_view s, T& out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n'; };
  while (i < s.size()) {
    while (i < s.size() && space(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !space(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

}  // namespace

Result<ProcStat> parse_proc_stat(std::string_view text) {
  const size_t open = text.find('('), close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return make_error(Errc::bad_format, "stat: no (comm)");
  ProcStat st;
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  const auto f = split_spaces(text.substr(close + 1));
  // f[0] is field 3 (state): field N is f[N - 3].
  if (f.size() < 22 || f[0].size() != 1) return make_error(Errc::bad_format, "stat: too short");
  st.state = f[0][0];
  const bool ok = parse_number(f[1], st.ppid) && parse_number(f[11], st.utime_ticks) &&
                  parse_number(f[12], st.stime_ticks) && parse_number(f[17], st.num_threads) &&
                  parse_number(f[19], st.start_time) && parse_number(f[20], st.vsize) &&
                  parse_number(f[21], st.rss_pages);
  if (!ok) return make_error(Errc::bad_format, "stat: bad number");
  if (f.size() > 36) parse_number(f[36], st.processor);
  return st;
}

Result<ProcStat> read_proc_stat(pid_t pid) {
  const std::string path = fmt::format("/proc/{}/stat", pid);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::not_found, fmt::format("no process {} on this host", pid));
  // One read() is the kernel's consistent snapshot; a stat line is well under 1 KiB.
  char buf[4096];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return make_error(Errc::not_found, fmt::format("no process {} on this host", pid));
  return parse_proc_stat(std::string_view(buf, static_cast<size_t>(n)));
}

}  // namespace nfm
