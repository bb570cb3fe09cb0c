// nfm uptime: the guest's uptime and load averages (like uptime / /proc/uptime).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/uptime/uptime.h"

namespace nfm::app {

void register_uptime(CLI::App& app) {
  add_guest_command(app, "uptime", "Print the guest's uptime and load averages",
                    [](Kernel& kernel, const TargetArgs& args) {
                      Output o;
                      format_uptime(o, crawl_section<UptimeInfo>(kernel), args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
