// nfm meminfo: the guest's memory summary (like /proc/meminfo).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/meminfo/meminfo.h"

namespace nfm::app {

void register_meminfo(CLI::App& app) {
  add_guest_command(app, "meminfo", "Print the guest's memory summary (like /proc/meminfo)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      Output o;
                      format_meminfo(o, crawl_section<MemInfo>(kernel), args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
