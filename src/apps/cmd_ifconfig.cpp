// nfm ifconfig: the guest's network interfaces, like ifconfig (counters as
// /proc/net/dev shows them).
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/interfaces.h"
#include "frame/frame_json.h"

namespace nfm::app {

namespace {

void print_text(const InterfaceRow& r) {
  const ProcNetDevCounters c = proc_net_dev_counters(r.stats);
  fmt::print("{}: flags={}<{}>  mtu {}  index {}\n", r.name, r.flags, interface_flag_names(r.flags),
             r.mtu, r.ifindex);
  for (const std::string& a : r.ipv4) fmt::print("        inet {}\n", a);
  for (const std::string& a : r.ipv6) fmt::print("        inet6 {}\n", a);
  if (!r.mac.empty()) fmt::print("        ether {}\n", r.mac);
  fmt::print("        RX packets {}  bytes {}\n", c.rx_packets, c.rx_bytes);
  fmt::print("        RX errors {}  dropped {}  overruns {}  frame {}\n", c.rx_errs, c.rx_drop,
             c.rx_fifo, c.rx_frame);
  fmt::print("        TX packets {}  bytes {}\n", c.tx_packets, c.tx_bytes);
  fmt::print("        TX errors {}  dropped {}  overruns {}  carrier {}  collisions {}\n",
             c.tx_errs, c.tx_drop, c.tx_fifo, c.tx_carrier, c.tx_colls);
  if (!r.stats_exact) fmt::print("        (counters not exact: {})\n", r.stats_note);
  fmt::print("\n");
}

}  // namespace

void register_ifconfig(CLI::App& app) {
  add_guest_command(
      app, "ifconfig", "List the guest's network interfaces (like ifconfig, /proc/net/dev)",
      [](Kernel& kernel, const TargetArgs& args) {
        auto reader = InterfaceReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        auto list = reader->list();
        if (!list) throw CLI::RuntimeError(report_error(list.error().to_string()));
        if (args.json) {
          fmt::print("{}\n", dump_json(interfaces_json(list->rows)));
        } else {
          for (const InterfaceRow& r : list->rows) print_text(r);
        }
        if (!list->walk.ok())
          fmt::print(stderr,
                     "nfm: warning: device list walk ended early ({}): the list may be "
                     "incomplete\n",
                     walk_end_name(list->walk.end));
        if (list->row_errors)
          fmt::print(stderr, "nfm: warning: {} devices could not be read\n", list->row_errors);
        if (list->address_errors)
          fmt::print(stderr, "nfm: warning: {} address lists could not be read completely\n",
                     list->address_errors);
        for (const InterfaceRow& r : list->rows)
          if (!r.stats_exact)
            fmt::print(stderr, "nfm: warning: {}: counters are not exact ({})\n", r.name,
                       r.stats_note);
      });
}

}  // namespace nfm::app
