// nfm ps: the guest's processes (and threads), like ps.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/processes.h"

namespace nfm::app {

void register_ps(CLI::App& app) {
  auto threads = std::make_shared<bool>(false);
  CLI::App* cmd = add_guest_command(
      app, "ps", "List the guest's processes (like ps)",
      [threads](Kernel& kernel, const TargetArgs& args) {
        auto reader = ProcessReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        ProcessOptions options;
        options.threads = *threads;
        auto list = reader->list(options);
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        if (args.json) {
          nlohmann::json rows = nlohmann::json::array();
          for (const ProcessRow& r : list->rows)
            rows.push_back({{"pid", r.pid},
                            {"tgid", r.tgid},
                            {"ppid", r.ppid},
                            {"comm", r.comm},
                            {"uid", r.uid},
                            {"gid", r.gid},
                            {"state", std::string(1, r.state)},
                            {"rss_kb", r.rss_kb},
                            {"vsz_kb", r.vsz_kb},
                            {"start_time", r.start_time_ns}});
          fmt::print("{}\n", rows.dump(1));
        } else {
          fmt::print("{:>7} {:>7} {:>7} {:>5} {:>5} {:1} {:>9} {:>9} {}\n", "PID", "TGID", "PPID",
                     "UID", "GID", "S", "VSZ", "RSS", "COMMAND");
          for (const ProcessRow& r : list->rows) {
            const std::string name = r.kernel_thread ? "[" + r.comm + "]" : r.comm;
            fmt::print("{:>7} {:>7} {:>7} {:>5} {:>5} {:1} {:>9} {:>9} {}\n", r.pid, r.tgid, r.ppid,
                       r.uid, r.gid, r.state, r.vsz_kb, r.rss_kb, name);
          }
        }
        if (!list->walk.ok())
          fmt::print(stderr,
                     "nfm: warning: task list walk ended early ({}): the list may be incomplete\n",
                     walk_end_name(list->walk.end));
        if (list->row_errors)
          fmt::print(stderr, "nfm: warning: {} tasks could not be read\n", list->row_errors);
      });
  cmd->add_flag("--threads,-T", *threads, "one row per thread");
}

}  // namespace nfm::app
