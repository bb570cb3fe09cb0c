// nfm uname: the guest's uname -a.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/uname.h"

namespace nfm::app {

void register_uname(CLI::App& app) {
  add_guest_command(app, "uname", "Print the guest's system information (like uname -a)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto u = read_uname(kernel);
                      if (!u) throw CLI::RuntimeError(report_error(u.error().to_string()));
                      if (args.json) {
                        nlohmann::json j = {{"sysname", u->sysname}, {"nodename", u->nodename},
                                            {"release", u->release}, {"version", u->version},
                                            {"machine", u->machine}, {"domainname", u->domainname}};
                        fmt::print("{}\n", j.dump(1));
                      } else {
                        fmt::print("{} {} {} {} {}\n", u->sysname, u->nodename, u->release,
                                   u->version, u->machine);
                      }
                    });
}

}  // namespace nfm::app
