// nfm ps: the guest's processes (and threads), like ps aux (or top's %CPU with --interval).
#include <chrono>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/processes/processes.h"
#include "features/uptime/uptime.h"

namespace nfm::app {

void register_ps(CLI::App& app) {
  struct Flags {
    bool threads = false;
    double interval = 0.0;
    int32_t pid = -1;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = add_guest_command(
      app, "ps", "List the guest's processes (like ps aux)",
      [flags](Kernel& kernel, const TargetArgs& args) {
        auto reader = ProcessReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        ProcessOptions options;
        options.threads = flags->threads;
        options.exe = true;
        auto list = reader->list(options);
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        if (flags->interval > 0) {
          // Two crawls: CPU shares over the interval in the guest's own time.
          std::this_thread::sleep_for(std::chrono::duration<double>(flags->interval));
          kernel.begin_crawl();
          auto later = reader->list(options);
          if (!later) throw CLI::RuntimeError(report_error(later.error().to_string()));
          measure_cpu_over_interval(*later, *list);
          list = std::move(later);
        }
        PsFormat f;
        f.json = args.json;
        if (flags->pid >= 0) f.pid = flags->pid;
        f.max_cmdline = options.max_cmdline;
        if (!args.json) {
          auto clock = read_uptime(kernel);
          f.boot_time = clock ? clock->boot_time : 0;
        }
        Output o;
        format_ps(o, *list, f);
        print(o);
      });
  cmd->add_flag("--threads,-T", flags->threads, "one row per thread");
  cmd->add_option("--pid,-p", flags->pid, "only this process (with -T: its threads)");
  cmd->add_option("--interval,-i", flags->interval,
                  "measure cpu_pct over SECS seconds of two crawls (default: lifetime average)")
      ->check(CLI::Range(0.0, 3600.0));
}

}  // namespace nfm::app
