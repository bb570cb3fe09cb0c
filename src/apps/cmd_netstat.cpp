// nfm netstat: the guest's sockets, like netstat -tuxanp.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/sockets.h"
#include "frame/frame_json.h"

namespace nfm::app {

namespace {

struct NetstatArgs {
  bool tcp = false, udp = false, unix_sockets = false;
};

// netstat -n: "127.0.0.1:7001", ":::7002", "0.0.0.0:*" (port 0 is "*").
std::string endpoint(const std::string& addr, uint16_t port) {
  return addr + ":" + (port ? std::to_string(port) : "*");
}

std::string program(const SocketRow& r) {
  return r.pid ? fmt::format("{}/{}", r.pid, r.comm) : "-";
}

void print_table(const SocketList& list) {
  bool inet_header = false, unix_header = false;
  for (const SocketRow& r : list.rows) {
    if (r.proto != "unix") {
      if (!inet_header) {
        fmt::print("Active Internet connections (servers and established)\n");
        fmt::print("{:<5} {:>6} {:>6} {:<23} {:<23} {:<11} {}\n", "Proto", "Recv-Q", "Send-Q",
                   "Local Address", "Foreign Address", "State", "PID/Program name");
        inet_header = true;
      }
      fmt::print("{:<5} {:>6} {:>6} {:<23} {:<23} {:<11} {}\n", r.proto, r.rx_queue, r.tx_queue,
                 endpoint(r.local_addr, r.local_port), endpoint(r.remote_addr, r.remote_port),
                 r.state, program(r));
      continue;
    }
    if (!unix_header) {
      fmt::print("Active UNIX domain sockets (servers and established)\n");
      fmt::print("{:<5} {:<6} {:<11} {:<10} {:<13} {:<8} {:<20} {}\n", "Proto", "RefCnt", "Flags",
                 "Type", "State", "I-Node", "PID/Program name", "Path");
      unix_header = true;
    }
    const std::string flags = (r.flags & 0x10000) ? "[ ACC ]" : "[ ]";
    fmt::print("{:<5} {:<6} {:<11} {:<10} {:<13} {:<8} {:<20} {}\n", r.proto, r.refcount, flags,
               r.type, r.state, r.inode, program(r), r.path);
  }
}

void warn(const char* table, const HashWalk& w) {
  if (!w.read)
    fmt::print(stderr, "nfm: warning: the {} table could not be read\n", table);
  else if (!w.ok())
    fmt::print(stderr, "nfm: warning: {} of the {} table's chains ended early ({})\n",
               w.broken_chains, table, walk_end_name(w.first_error));
}

}  // namespace

void register_netstat(CLI::App& app) {
  auto args = std::make_shared<NetstatArgs>();
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
        if (target.json)
          fmt::print("{}\n", dump_json(sockets_json(list->rows)));
        else
          print_table(*list);
        if (options.tcp) {
          warn("TCP listening", list->tcp_listen);
          warn("TCP established", list->tcp_established);
        }
        if (options.udp) warn("UDP", list->udp);
        if (options.unix_sockets) warn("UNIX", list->unix_table);
        if (list->row_errors)
          fmt::print(stderr, "nfm: warning: {} sockets could not be read\n", list->row_errors);
        if (list->inode_errors)
          fmt::print(stderr, "nfm: warning: {} sockets' inodes could not be read\n",
                     list->inode_errors);
        if (!list->owners_error.empty())
          fmt::print(stderr, "nfm: warning: socket owners unknown: {}\n", list->owners_error);
        else if (list->owner_errors)
          fmt::print(stderr, "nfm: warning: {} fd tables or files could not be read\n",
                     list->owner_errors);
      });
  cmd->add_flag("--tcp,-t", args->tcp, "TCP sockets");
  cmd->add_flag("--udp,-u", args->udp, "UDP sockets");
  cmd->add_flag("--unix,-x", args->unix_sockets, "UNIX sockets");
}

}  // namespace nfm::app
