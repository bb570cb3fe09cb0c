// nfm ps: the guest's processes (and threads), like ps aux (or top's %CPU with --interval).
#include <chrono>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
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
        FrameOptions options{.features = {Feature::named("processes")}};
        options.processes.threads = flags->threads;
        options.processes.exe = true;
        // The text form shows START in the guest's wall clock: its boot time too.
        if (!args.json) options.features.push_back(Feature::named("uptime"));
        FrameCrawler crawler(kernel);
        Frame frame = crawl_or_report(crawler, options, {Feature::named("processes")});
        if (flags->interval > 0) {
          // Two crawls: CPU shares over the interval in the guest's own time.
          std::this_thread::sleep_for(std::chrono::duration<double>(flags->interval));
          Frame later = crawl_or_report(crawler, options, {Feature::named("processes")});
          measure_cpu_over_interval(*later.get<ProcessList>(), *frame.get<ProcessList>());
          frame = std::move(later);
        }
        PsFormat f;
        f.json = args.json;
        if (flags->pid >= 0) f.pid = flags->pid;
        f.max_cmdline = options.processes.max_cmdline;
        if (const UptimeInfo* clock = frame.get<UptimeInfo>()) f.boot_time = clock->boot_time;
        Output o;
        format_ps(o, *frame.get<ProcessList>(), f);
        print(o);
      });
  cmd->add_flag("--threads,-T", flags->threads, "one row per thread");
  cmd->add_option("--pid,-p", flags->pid, "only this process (with -T: its threads)");
  cmd->add_option("--interval,-i", flags->interval,
                  "measure cpu_pct over SECS seconds of two crawls (default: lifetime average)")
      ->check(CLI::Range(0.0, 3600.0));
}

}  // namespace nfm::app
