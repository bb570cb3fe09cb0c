// nfm uptime: the guest's uptime and load averages (like uptime / /proc/uptime).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/uptime/uptime.h"

namespace nfm::app {

void register_uptime(CLI::App& app) {
  add_guest_command(app, "uptime", "Print the guest's uptime and load averages",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto u = read_uptime(kernel);
                      if (!u) throw CLI::RuntimeError(report_error(u.error().to_string()));
                      Output o;
                      format_uptime(o, *u, args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
