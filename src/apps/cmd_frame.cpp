// nfm frame: one complete crawl of a guest as a JSON frame (docs/frame-schema.md).
#include <fmt/core.h>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/guest_crawl.h"
#include "frame/frame_crawler.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_frame(CLI::App& app) {
  struct Options {
    std::string features = "all";
    bool compact = false;
    bool threads = false;
    BudgetArgs budget;
  };
  auto options = std::make_shared<Options>();
  CLI::App* cmd = add_guest_command(
      app, "frame",
      "Crawl the guest once and print a JSON frame: metadata (kernel, cost, per-feature "
      "status and error counts) and every feature's rows",
      [options](Kernel& kernel, const TargetArgs&) {
        auto features = parse_feature_list(options->features);
        if (!features) throw CLI::RuntimeError(report_error(features.error().to_string()));
        FrameOptions frame_options;
        frame_options.features = *features;
        frame_options.processes.threads = options->threads;
        frame_options.budget = crawl_budget(options->budget);
        FrameCrawler crawler(kernel);
        const Frame frame = crawler.crawl(frame_options);
        fmt::print("{}\n", dump_json(frame_json(frame), options->compact ? -1 : 1));
        // A frame is printed even when features failed; the exit status tells scripts.
        if (!frame.meta.budget_spent.empty())
          fmt::print(stderr, "nfm: warning: crawl budget spent by {}\n", frame.meta.budget_spent);
        for (const auto& [feature, status] : frame.meta.features)
          if (!status.ok)
            fmt::print(stderr, "nfm: warning: {}: {}\n", feature_name(feature), status.error);
      });
  cmd->add_option("--features,-f", options->features,
                  "comma-separated features (uname, uptime, cpuinfo, meminfo, processes/ps, "
                  "modules/lsmod, kmsg/dmesg, interfaces/ifconfig, open_files/lsof, "
                  "memory_maps/maps, sockets/netstat) or all")
      ->capture_default_str();
  cmd->add_flag("--compact", options->compact, "one line (JSON Lines) instead of indented JSON");
  cmd->add_flag("--threads,-T", options->threads, "processes: one row per thread");
  add_budget_options(*cmd, options->budget);
}

}  // namespace nfm::app
