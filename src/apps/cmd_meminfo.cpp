// nfm meminfo: the guest's memory summary (like /proc/meminfo).
#include <fmt/core.h>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/meminfo.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_meminfo(CLI::App& app) {
  add_guest_command(app, "meminfo", "Print the guest's memory summary (like /proc/meminfo)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto m = read_meminfo(kernel);
                      if (!m) throw CLI::RuntimeError(report_error(m.error().to_string()));
                      const std::pair<const char*, uint64_t> rows[] = {
                          {"MemTotal:", m->total_kb},         {"MemFree:", m->free_kb},
                          {"MemAvailable:", m->available_kb}, {"Buffers:", m->buffers_kb},
                          {"Cached:", m->cached_kb},          {"SwapTotal:", m->swap_total_kb},
                          {"SwapFree:", m->swap_free_kb}};
                      if (args.json) {
                        fmt::print("{}\n", dump_json(meminfo_json(*m)));
                      } else {
                        for (const auto& [label, kb] : rows)
                          fmt::print("{:<16}{:>8} kB\n", label, kb);
                      }
                    });
}

}  // namespace nfm::app
