// nfm lsmod: the guest's loaded kernel modules, like /proc/modules (or lsmod).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/modules/modules.h"

namespace nfm::app {

void register_lsmod(CLI::App& app) {
  add_guest_command(app, "lsmod", "List the guest's kernel modules (like /proc/modules)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      Output o;
                      format_lsmod(o, crawl_section<ModuleList>(kernel), args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
