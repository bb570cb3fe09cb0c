// nfm lsof: every process's open files, like /proc/PID/fd and fdinfo (or lsof).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/open_files/open_files.h"

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
        Output o;
        format_lsof(o, *list, options.pid, args.json);
        print(o);
      });
  cmd->add_option("--pid,-p", *pid, "only this process");
}

}  // namespace nfm::app
