// nfm cpuinfo: the guest's CPUs (like /proc/cpuinfo).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/cpuinfo/cpuinfo.h"

namespace nfm::app {

void register_cpuinfo(CLI::App& app) {
  add_guest_command(app, "cpuinfo", "Print the guest's CPUs (like /proc/cpuinfo)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto cpus = read_cpuinfo(kernel);
                      if (!cpus) throw CLI::RuntimeError(report_error(cpus.error().to_string()));
                      Output o;
                      format_cpuinfo(o, *cpus, args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
