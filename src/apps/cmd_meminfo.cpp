// nfm meminfo: the guest's memory summary (like /proc/meminfo).
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/meminfo.h"

namespace nfm::app {

void register_meminfo(CLI::App& app) {
  add_guest_command(app, "meminfo", "Print the guest's memory summary (like /proc/meminfo)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto m = read_meminfo(kernel);
                      if (!m) throw CLI::RuntimeError(report_error(m.error().to_string()));
                      const std::pair<const char*, uint64_t> rows[] = {
                          {"total_kb", m->total_kb},         {"free_kb", m->free_kb},
                          {"available_kb", m->available_kb}, {"buffers_kb", m->buffers_kb},
                          {"cached_kb", m->cached_kb},       {"swap_total_kb", m->swap_total_kb},
                          {"swap_free_kb", m->swap_free_kb}};
                      const char* labels[] = {
                          "MemTotal:", "MemFree:",   "MemAvailable:", "Buffers:",
                          "Cached:",   "SwapTotal:", "SwapFree:"};
                      if (args.json) {
                        nlohmann::json j = nlohmann::json::object();
                        for (const auto& [key, value] : rows) j[key] = value;
                        fmt::print("{}\n", j.dump(1));
                      } else {
                        for (size_t i = 0; i < std::size(rows); ++i)
                          fmt::print("{:<16}{:>8} kB\n", labels[i], rows[i].second);
                      }
                    });
}

}  // namespace nfm::app
