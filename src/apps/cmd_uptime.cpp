// nfm uptime: the guest's uptime and load averages (like uptime / /proc/uptime).
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/uptime.h"

namespace nfm::app {

void register_uptime(CLI::App& app) {
  add_guest_command(
      app, "uptime", "Print the guest's uptime and load averages",
      [](Kernel& kernel, const TargetArgs& args) {
        auto u = read_uptime(kernel);
        if (!u) throw CLI::RuntimeError(report_error(u.error().to_string()));
        // Seconds with /proc/uptime's two decimals (it truncates to hundredths).
        const double uptime_s = static_cast<double>(u->uptime_ns / 10'000'000) / 100.0;
        const double load[3] = {u->load_centi[0] / 100.0, u->load_centi[1] / 100.0,
                                u->load_centi[2] / 100.0};
        if (args.json) {
          nlohmann::json j = {{"uptime_s", uptime_s},     {"uptime_ns", u->uptime_ns},
                              {"load1", load[0]},         {"load5", load[1]},
                              {"load15", load[2]},        {"jiffies", u->jiffies},
                              {"boot_time", u->boot_time}};
          fmt::print("{}\n", j.dump(1));
        } else {
          const uint64_t s = u->uptime_ns / 1'000'000'000;
          fmt::print("up {} days, {:02}:{:02}:{:02}, load average: {:.2f}, {:.2f}, {:.2f}\n",
                     s / 86400, s / 3600 % 24, s / 60 % 60, s % 60, load[0], load[1], load[2]);
        }
      });
}

}  // namespace nfm::app
