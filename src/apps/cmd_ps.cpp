// nfm ps: the guest's processes (and threads), like ps aux (or top's %CPU with --interval).
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/processes.h"
#include "features/uptime.h"
#include "frame/frame_json.h"

namespace nfm::app {

namespace {

constexpr uint64_t kNsPerSec = 1'000'000'000;

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
  const bool today = now_ns < start_ns + 24 * 3600 * kNsPerSec;
  std::strftime(out, sizeof out, today ? "%H:%M" : "%b%d", &tm);
  return out;
}

}  // namespace

void register_ps(CLI::App& app) {
  auto threads = std::make_shared<bool>(false);
  auto interval = std::make_shared<double>(0.0);
  CLI::App* cmd = add_guest_command(
      app, "ps", "List the guest's processes (like ps aux)",
      [threads, interval](Kernel& kernel, const TargetArgs& args) {
        auto reader = ProcessReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        ProcessOptions options;
        options.threads = *threads;
        options.exe = true;
        auto list = reader->list(options);
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        if (*interval > 0) {
          // Two crawls: CPU shares over the interval in the guest's own time.
          std::this_thread::sleep_for(std::chrono::duration<double>(*interval));
          kernel.begin_crawl();
          auto later = reader->list(options);
          if (!later) throw CLI::RuntimeError(report_error(later.error().to_string()));
          measure_cpu_over_interval(*later, *list);
          list = std::move(later);
        }
        if (args.json) {
          fmt::print("{}\n", dump_json(processes_json(list->rows)));
        } else {
          auto clock = read_uptime(kernel);
          const int64_t boot_time = clock ? clock->boot_time : 0;
          fmt::print(
              "{:>5} {:>7} {:>7} {:>7} {:1} {:>3} {:>3} {:>4} {:>5} {:>7} {:>5} {:>9} {:>8} {}\n",
              "UID", "PID", "TGID", "PPID", "S", "NI", "PRI", "THR", "%CPU", "TIME", "START", "VSZ",
              "RSS", "COMMAND");
          for (const ProcessRow& r : list->rows)
            fmt::print(
                "{:>5} {:>7} {:>7} {:>7} {:1} {:>3} {:>3} {:>4} {:>5.1f} {:>7} {:>5} {:>9} {:>8} "
                "{}\n",
                r.uid, r.pid, r.tgid, r.ppid, r.state, r.nice, r.prio, r.threads, r.cpu_pct,
                cpu_time_text(r.utime_ns + r.stime_ns),
                start_text(r.start_time_ns, list->clock_ns, boot_time), r.vsz_kb, r.rss_kb,
                command_text(r));
        }
        if (!list->walk.ok())
          fmt::print(stderr,
                     "nfm: warning: task list walk ended early ({}): the list may be incomplete\n",
                     walk_end_name(list->walk.end));
        if (list->row_errors)
          fmt::print(stderr, "nfm: warning: {} tasks could not be read\n", list->row_errors);
        if (list->thread_walk_errors)
          fmt::print(stderr, "nfm: warning: {} thread lists could not be read in full\n",
                     list->thread_walk_errors);
        if (list->memory_errors)
          fmt::print(stderr, "nfm: warning: the memory of {} processes could not be read\n",
                     list->memory_errors);
        if (list->cmdline_errors)
          fmt::print(stderr, "nfm: warning: {} command lines could not be read in full\n",
                     list->cmdline_errors);
        if (list->cmdline_truncated)
          fmt::print(stderr, "nfm: warning: {} command lines were cut at {} bytes\n",
                     list->cmdline_truncated, options.max_cmdline);
        if (list->exe_errors)
          fmt::print(stderr, "nfm: warning: {} executable paths could not be read\n",
                     list->exe_errors);
        if (!list->clock_ns)
          fmt::print(stderr, "nfm: warning: the guest's clock is unreadable: cpu_pct is 0\n");
      });
  cmd->add_flag("--threads,-T", *threads, "one row per thread");
  cmd->add_option("--interval,-i", *interval,
                  "measure cpu_pct over SECS seconds of two crawls (default: lifetime average)")
      ->check(CLI::Range(0.0, 3600.0));
}

}  // namespace nfm::app
