// nfm uname: the guest's uname -a.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/uname/uname.h"

namespace nfm::app {

void register_uname(CLI::App& app) {
  add_guest_command(app, "uname", "Print the guest's system information (like uname -a)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto u = read_uname(kernel);
                      if (!u) throw CLI::RuntimeError(report_error(u.error().to_string()));
                      Output o;
                      format_uname(o, *u, args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
