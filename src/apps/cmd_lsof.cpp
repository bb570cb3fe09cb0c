// nfm lsof: every process's open files, like /proc/PID/fd and fdinfo (or lsof).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/open_files/open_files.h"

namespace nfm::app {

void register_lsof(CLI::App& app) {
  auto pid = std::make_shared<int32_t>(-1);
  CLI::App* cmd = add_guest_command(
      app, "lsof", "List the guest's open files (like /proc/PID/fd)",
      [pid](Kernel& kernel, const TargetArgs& args) {
        OpenFileOptions options;
        if (*pid >= 0) options.pid = *pid;
        Output o;
        format_lsof(o, crawl_section<OpenFileList>(kernel, options), options.pid, args.json);
        print(o);
      });
  cmd->add_option("--pid,-p", *pid, "only this process");
}

}  // namespace nfm::app
