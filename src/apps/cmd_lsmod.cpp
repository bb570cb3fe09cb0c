// nfm lsmod: the guest's loaded kernel modules, like /proc/modules (or lsmod).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/modules/modules.h"

namespace nfm::app {

void register_lsmod(CLI::App& app) {
  add_guest_command(app, "lsmod", "List the guest's kernel modules (like /proc/modules)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto reader = ModuleReader::create(kernel);
                      if (!reader)
                        throw CLI::RuntimeError(report_error(reader.error().to_string()));
                      auto list = reader->list();
                      if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
                      Output o;
                      format_lsmod(o, *list, args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
