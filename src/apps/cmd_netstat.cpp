// nfm netstat: the guest's sockets, like netstat -tuxanp.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/sockets/sockets.h"

namespace nfm::app {

void register_netstat(CLI::App& app) {
  auto args = std::make_shared<NetstatFilter>(NetstatFilter{false, false, false});
  CLI::App* cmd = add_guest_command(
      app, "netstat", "List the guest's sockets (like netstat -tuxanp)",
      [args](Kernel& kernel, const TargetArgs& target) {
        SocketOptions options;
        // No filter flag: everything, like netstat -tux.
        if (args->tcp || args->udp || args->unix_sockets) {
          options.tcp = args->tcp;
          options.udp = args->udp;
          options.unix_sockets = args->unix_sockets;
        }
        Output o;
        format_netstat(o, crawl_section<SocketList>(kernel, options),
                       {options.tcp, options.udp, options.unix_sockets}, target.json);
        print(o);
      });
  cmd->add_flag("--tcp,-t", args->tcp, "TCP sockets");
  cmd->add_flag("--udp,-u", args->udp, "UDP sockets");
  cmd->add_flag("--unix,-x", args->unix_sockets, "UNIX sockets");
}

}  // namespace nfm::app
