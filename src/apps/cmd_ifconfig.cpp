// nfm ifconfig: the guest's network interfaces, like ifconfig (counters as
// /proc/net/dev shows them).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/interfaces/interfaces.h"

namespace nfm::app {

void register_ifconfig(CLI::App& app) {
  add_guest_command(app, "ifconfig",
                    "List the guest's network interfaces (like ifconfig, /proc/net/dev)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      Output o;
                      format_ifconfig(o, crawl_section<InterfaceList>(kernel), args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
