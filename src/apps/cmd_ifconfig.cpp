// nfm ifconfig: the guest's network interfaces, like ifconfig (counters as
// /proc/net/dev shows them).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/interfaces/interfaces.h"

namespace nfm::app {

void register_ifconfig(CLI::App& app) {
  add_guest_command(app, "ifconfig",
                    "List the guest's network interfaces (like ifconfig, /proc/net/dev)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto reader = InterfaceReader::create(kernel);
                      if (!reader)
                        throw CLI::RuntimeError(report_error(reader.error().to_string()));
                      auto list = reader->list();
                      if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
                      Output o;
                      format_ifconfig(o, *list, args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
