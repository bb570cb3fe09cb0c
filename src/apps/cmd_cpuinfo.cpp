// nfm cpuinfo: the guest's CPUs (like /proc/cpuinfo).
#include <fmt/core.h>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/cpuinfo.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_cpuinfo(CLI::App& app) {
  add_guest_command(
      app, "cpuinfo", "Print the guest's CPUs (like /proc/cpuinfo)",
      [](Kernel& kernel, const TargetArgs& args) {
        auto cpus = read_cpuinfo(kernel);
        if (!cpus) throw CLI::RuntimeError(report_error(cpus.error().to_string()));
        if (args.json) {
          fmt::print("{}\n", dump_json(cpuinfo_json(*cpus)));
        } else {
          for (const CpuRow& c : *cpus) {
            fmt::print("processor\t: {}\nvendor_id\t: {}\ncpu family\t: {}\nmodel\t\t: {}\n",
                       c.processor, c.vendor, c.family, c.model);
            fmt::print("model name\t: {}\nstepping\t: {}\ncpu MHz\t\t: {}.{:03}\n", c.model_name,
                       c.stepping, c.khz / 1000, c.khz % 1000);
            if (c.cache_kb >= 0) fmt::print("cache size\t: {} KB\n", c.cache_kb);
            std::string flags;
            for (const std::string& f : c.flags) flags += " " + f;
            fmt::print("flags\t\t:{}\n\n", flags);
          }
        }
      });
}

}  // namespace nfm::app
