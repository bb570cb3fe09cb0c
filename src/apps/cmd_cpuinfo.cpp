// nfm cpuinfo: the guest's CPUs (like /proc/cpuinfo).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/cpuinfo/cpuinfo.h"

namespace nfm::app {

void register_cpuinfo(CLI::App& app) {
  add_guest_command(app, "cpuinfo", "Print the guest's CPUs (like /proc/cpuinfo)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      Output o;
                      format_cpuinfo(o, crawl_section<CpuList>(kernel).rows, args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
