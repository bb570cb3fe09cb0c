// nfm uptime: the guest's uptime and load averages (like uptime / /proc/uptime).
#include <fmt/core.h>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/uptime.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_uptime(CLI::App& app) {
  add_guest_command(
      app, "uptime", "Print the guest's uptime and load averages",
      [](Kernel& kernel, const TargetArgs& args) {
        auto u = read_uptime(kernel);
        if (!u) throw CLI::RuntimeError(report_error(u.error().to_string()));
        const double load[3] = {u->load_centi[0] / 100.0, u->load_centi[1] / 100.0,
                                u->load_centi[2] / 100.0};
        if (args.json) {
          fmt::print("{}\n", dump_json(uptime_json(*u)));
        } else {
          const uint64_t s = u->uptime_ns / 1'000'000'000;
          fmt::print("up {} days, {:02}:{:02}:{:02}, load average: {:.2f}, {:.2f}, {:.2f}\n",
                     s / 86400, s / 3600 % 24, s / 60 % 60, s % 60, load[0], load[1], load[2]);
        }
      });
}

}  // namespace nfm::app
