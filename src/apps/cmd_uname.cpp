// nfm uname: the guest's uname -a.
#include <fmt/core.h>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/uname.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_uname(CLI::App& app) {
  add_guest_command(app, "uname", "Print the guest's system information (like uname -a)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto u = read_uname(kernel);
                      if (!u) throw CLI::RuntimeError(report_error(u.error().to_string()));
                      if (args.json) {
                        fmt::print("{}\n", dump_json(uname_json(*u)));
                      } else {
                        fmt::print("{} {} {} {} {}\n", u->sysname, u->nodename, u->release,
                                   u->version, u->machine);
                      }
                    });
}

}  // namespace nfm::app
