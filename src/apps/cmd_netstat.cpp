// nfm netstat: the guest's sockets, like netstat -tuxanp.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/sockets/sockets.h"

namespace nfm::app {

void register_netstat(CLI::App& app) {
  auto args = std::make_shared<NetstatFilter>(NetstatFilter{false, false, false});
  CLI::App* cmd = add_guest_command(
      app, "netstat", "List the guest's sockets (like netstat -tuxanp)",
      [args](Kernel& kernel, const TargetArgs& target) {
        auto reader = SocketReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        SocketOptions options;
        // No filter flag: everything, like netstat -tux.
        if (args->tcp || args->udp || args->unix_sockets) {
          options.tcp = args->tcp;
          options.udp = args->udp;
          options.unix_sockets = args->unix_sockets;
        }
        auto list = reader->list(options);
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        Output o;
        format_netstat(o, *list, {options.tcp, options.udp, options.unix_sockets}, target.json);
        print(o);
      });
  cmd->add_flag("--tcp,-t", args->tcp, "TCP sockets");
  cmd->add_flag("--udp,-u", args->udp, "UDP sockets");
  cmd->add_flag("--unix,-x", args->unix_sockets, "UNIX sockets");
}

}  // namespace nfm::app
