// nfm lsmod: the guest's loaded kernel modules, like /proc/modules (or lsmod).
#include <fmt/core.h>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/modules.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_lsmod(CLI::App& app) {
  add_guest_command(
      app, "lsmod", "List the guest's kernel modules (like /proc/modules)",
      [](Kernel& kernel, const TargetArgs& args) {
        auto reader = ModuleReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        auto list = reader->list();
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        if (args.json) {
          fmt::print("{}\n", dump_json(modules_json(list->rows)));
        } else {
          for (const ModuleRow& r : list->rows) fmt::print("{}\n", proc_modules_line(r));
        }
        if (!list->walk.ok())
          fmt::print(
              stderr,
              "nfm: warning: module list walk ended early ({}): the list may be incomplete\n",
              walk_end_name(list->walk.end));
        if (list->row_errors)
          fmt::print(stderr, "nfm: warning: {} modules could not be read\n", list->row_errors);
        if (list->user_walk_errors)
          fmt::print(stderr, "nfm: warning: {} modules' user lists ended early\n",
                     list->user_walk_errors);
      });
}

}  // namespace nfm::app
