// nfm lsof: every process's open files, like /proc/PID/fd and fdinfo (or lsof).
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/open_files.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_lsof(CLI::App& app) {
  auto pid = std::make_shared<int32_t>(-1);
  CLI::App* cmd = add_guest_command(
      app, "lsof", "List the guest's open files (like /proc/PID/fd)",
      [pid](Kernel& kernel, const TargetArgs& args) {
        auto reader = OpenFileReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        OpenFileOptions options;
        if (*pid >= 0) options.pid = *pid;
        auto list = reader->list(options);
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        if (args.json) {
          fmt::print("{}\n", dump_json(open_files_json(list->rows)));
        } else {
          fmt::print("{:>7} {:<16} {:>5} {:<6} {:>10} {:>10} {:>9} {}\n", "PID", "COMMAND", "FD",
                     "TYPE", "INODE", "POS", "FLAGS", "PATH");
          for (const OpenFileRow& r : list->rows)
            fmt::print("{:>7} {:<16} {:>5} {:<6} {:>10} {:>10} {:>9} {}\n", r.pid, r.comm, r.fd,
                       r.type, r.inode, r.pos, fmt::format("0{:o}", r.flags), r.path);
        }
        if (!list->walk.ok())
          fmt::print(stderr,
                     "nfm: warning: task list walk ended early ({}): the list may be incomplete\n",
                     walk_end_name(list->walk.end));
        if (list->task_errors)
          fmt::print(stderr, "nfm: warning: {} processes' fd tables could not be read\n",
                     list->task_errors);
        if (list->row_errors)
          fmt::print(stderr, "nfm: warning: {} open files could not be read\n", list->row_errors);
        if (list->truncated_tables)
          fmt::print(stderr, "nfm: warning: {} fd tables were larger than the bound\n",
                     list->truncated_tables);
      });
  cmd->add_option("--pid,-p", *pid, "only this process");
}

}  // namespace nfm::app
