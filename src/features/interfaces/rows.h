// `interfaces`' section of a frame: network interfaces with their addresses and
// /proc/net/dev counters. Row types and columns only: no kernel model here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/walk_result.h"
#include "schema/fields.h"

namespace nfm {

struct LinkStats {
  uint64_t rx_packets = 0, tx_packets = 0, rx_bytes = 0, tx_bytes = 0;
  uint64_t rx_errors = 0, tx_errors = 0, rx_dropped = 0, tx_dropped = 0;
  uint64_t multicast = 0, collisions = 0;
  uint64_t rx_length_errors = 0, rx_over_errors = 0, rx_crc_errors = 0, rx_frame_errors = 0,
           rx_fifo_errors = 0, rx_missed_errors = 0;
  uint64_t tx_aborted_errors = 0, tx_carrier_errors = 0, tx_fifo_errors = 0,
           tx_heartbeat_errors = 0, tx_window_errors = 0;
  uint64_t rx_compressed = 0, tx_compressed = 0, rx_nohandler = 0;
};

struct InterfaceRow {
  std::string name;
  int32_t ifindex = 0;
  std::string mac;  // dev_addr, addr_len bytes as "52:54:00:12:34:56"; "" if none
  uint32_t mtu = 0;
  uint32_t flags = 0;             // IFF_* as dev_get_flags() reports them (RUNNING, LOWER_UP, ...)
  bool up = false;                // IFF_UP
  std::vector<std::string> ipv4;  // "10.0.2.15/24", in the device's ifa_list order
  std::vector<std::string> ipv6;  // "fd00::15/64", "fe80::.../64", in addr_list order
  LinkStats stats;
  // Whose counters these are: the driver's ndo_get_stats64 by its guest symbol
  // ("virtnet_stats"), or "dev->stats". Unknown drivers get dev->stats and
  // stats_exact = false: their real counters live where we do not look.
  std::string stats_source;
  bool stats_exact = true;
  std::string stats_note;  // why not exact, when it is not
  uint64_t device = 0;     // struct net_device address
};

// The 16 numbers of a /proc/net/dev line, in its column order.
struct ProcNetDevCounters {
  uint64_t rx_bytes, rx_packets, rx_errs, rx_drop, rx_fifo, rx_frame, rx_compressed, rx_multicast;
  uint64_t tx_bytes, tx_packets, tx_errs, tx_drop, tx_fifo, tx_colls, tx_carrier, tx_compressed;
};
ProcNetDevCounters proc_net_dev_counters(const LinkStats& s);
// The line /proc/net/dev prints for this interface.
std::string proc_net_dev_line(const InterfaceRow& row);
// "UP,BROADCAST,RUNNING,MULTICAST" (ifconfig's names, in bit order).
std::string interface_flag_names(uint32_t flags);

struct InterfaceOptions {
  size_t max_devices = 1 << 14;
  size_t max_addresses = 1 << 12;  // per device and family
  size_t max_queues = 1 << 10;     // driver queue pairs summed
};

struct InterfaceList {
  static constexpr std::string_view kFeature = "interfaces";
  std::vector<InterfaceRow> rows;  // in dev_base_head order, like /proc/net/dev
  WalkResult walk;                 // init_net.dev_base_head
  uint64_t row_errors = 0;         // devices skipped because a read failed
  uint64_t address_errors = 0;     // MACs and address lists that failed to read (in full)
  uint64_t stats_errors = 0;       // counters that failed to read (partial sums)
  uint64_t stats_unsupported = 0;  // devices whose driver keeps counters we cannot read
};

const schema::Fields<InterfaceRow>& interface_fields();

}  // namespace nfm
