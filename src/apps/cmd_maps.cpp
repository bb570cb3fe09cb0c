// nfm maps: every process's memory maps, like /proc/PID/maps; --pages adds the
// pages present in each map with their guest-physical addresses.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/memory_maps/memory_maps.h"

namespace nfm::app {

void register_maps(CLI::App& app) {
  struct Flags {
    int32_t pid = -1;
    bool pages = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = add_guest_command(
      app, "maps", "List the guest's process memory maps (like /proc/PID/maps)",
      [flags](Kernel& kernel, const TargetArgs& args) {
        MemoryMapOptions options;
        if (flags->pid >= 0) options.pid = flags->pid;
        options.pages = flags->pages;
        Output o;
        format_maps(o, crawl_section<MemoryMapList>(kernel, options), options.pid, options.pages,
                    args.json);
        print(o);
      });
  cmd->add_option("--pid,-p", flags->pid, "only this process");
  cmd->add_flag("--pages", flags->pages, "list present pages and their guest-physical addresses");
}

}  // namespace nfm::app
