// nfm maps: every process's memory maps, like /proc/PID/maps; --pages adds the
// pages present in each map with their guest-physical addresses.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/memory_maps.h"
#include "frame/frame_json.h"

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
        auto reader = MemoryMapReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        MemoryMapOptions options;
        if (flags->pid >= 0) options.pid = flags->pid;
        options.pages = flags->pages;
        auto list = reader->list(options);
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        if (args.json) {
          fmt::print("{}\n", dump_json(memory_maps_json(list->rows, options.pages)));
        } else {
          int32_t shown = -1;
          for (const MemoryMapRow& r : list->rows) {
            if (r.pid != shown && !options.pid) fmt::print("==> {} ({}) <==\n", r.pid, r.comm);
            shown = r.pid;
            fmt::print("{}\n", proc_maps_line(r));
            for (const MappedPage& p : r.pages)
              fmt::print("    {:#x} -> {:#x} {}K{}\n", p.va, p.pa, p.size / 1024,
                         p.writable ? " w" : "");
          }
        }
        if (!list->walk.ok())
          fmt::print(stderr,
                     "nfm: warning: task list walk ended early ({}): the list may be incomplete\n",
                     walk_end_name(list->walk.end));
        if (list->task_errors)
          fmt::print(stderr, "nfm: warning: {} processes' memory could not be read\n",
                     list->task_errors);
        if (list->vma_walk_errors)
          fmt::print(stderr, "nfm: warning: {} processes' VMA walks ended early\n",
                     list->vma_walk_errors);
        if (list->row_errors)
          fmt::print(stderr, "nfm: warning: {} maps could not be read\n", list->row_errors);
        if (list->page_errors)
          fmt::print(stderr, "nfm: warning: {} page-table walks were incomplete\n",
                     list->page_errors);
      });
  cmd->add_option("--pid,-p", flags->pid, "only this process");
  cmd->add_flag("--pages", flags->pages, "list present pages and their guest-physical addresses");
}

}  // namespace nfm::app
