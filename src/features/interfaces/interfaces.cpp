#include "features/interfaces/interfaces.h"

#include <arpa/inet.h>
#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "kernel/layout.h"
#include "kernel/module_symbols.h"

namespace nfm {

namespace {

// include/uapi/linux/if.h: user-space ABI, the same on every kernel.
constexpr uint32_t kIffUp = 0x1;
constexpr uint32_t kIffPromisc = 0x100;
constexpr uint32_t kIffAllmulti = 0x200;
constexpr uint32_t kIffRunning = 0x40;
constexpr uint32_t kIffLowerUp = 0x10000;
constexpr uint32_t kIffDormant = 0x20000;
constexpr int64_t kIfOperUnknown = 0;  // enum IF_OPER_* (RFC 2863 operstate)
constexpr int64_t kIfOperUp = 6;
constexpr uint64_t kMaxAddrLen = 32;   // MAX_ADDR_LEN
constexpr uint64_t kNetdevAlign = 32;  // NETDEV_ALIGN: netdev_priv() before net_device.priv[]

// net_device_stats, in the order netdev_stats_to_stats64() copies them into
// rtnl_link_stats64 (the first 23 fields of both).
constexpr const char* kDevStatNames[] = {
    "rx_packets",        "tx_packets",        "rx_bytes",         "tx_bytes",
    "rx_errors",         "tx_errors",         "rx_dropped",       "tx_dropped",
    "multicast",         "collisions",        "rx_length_errors", "rx_over_errors",
    "rx_crc_errors",     "rx_frame_errors",   "rx_fifo_errors",   "rx_missed_errors",
    "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",   "tx_heartbeat_errors",
    "tx_window_errors",  "rx_compressed",     "tx_compressed"};
constexpr size_t kDevStats = std::size(kDevStatNames);

uint64_t* stat_field(LinkStats& s, size_t i) {
  uint64_t* fields[kDevStats] = {
      &s.rx_packets,        &s.tx_packets,        &s.rx_bytes,         &s.tx_bytes,
      &s.rx_errors,         &s.tx_errors,         &s.rx_dropped,       &s.tx_dropped,
      &s.multicast,         &s.collisions,        &s.rx_length_errors, &s.rx_over_errors,
      &s.rx_crc_errors,     &s.rx_frame_errors,   &s.rx_fifo_errors,   &s.rx_missed_errors,
      &s.tx_aborted_errors, &s.tx_carrier_errors, &s.tx_fifo_errors,   &s.tx_heartbeat_errors,
      &s.tx_window_errors,  &s.rx_compressed,     &s.tx_compressed};
  return fields[i];
}

using Slot = FieldSlot;

std::string cidr(int family, const uint8_t* addr, unsigned prefix) {
  char text[INET6_ADDRSTRLEN] = "";
  if (!inet_ntop(family, addr, text, sizeof text)) return {};
  return fmt::format("{}/{}", text, prefix);
}

}  // namespace

struct InterfaceReader::Layout {
  uint64_t init_net = 0;
  uint64_t dev_base_head = 0;  // in struct net
  uint64_t dev_size = 0;
  uint64_t priv = 0;  // netdev_priv(dev) - dev
  Slot dev_list, name, ifindex, mtu, flags, gflags, state, operstate, addr_len, dev_addr,
      netdev_ops, ip_ptr, ip6_ptr, lstats, core_stats;
  Slot dev_stats[kDevStats];
  Slot old_rx_dropped, old_tx_dropped, old_rx_nohandler;  // atomic_long_t before core_stats
  // netdev_state_t bits of dev->state.
  int64_t link_start = 0, link_nocarrier = 0, link_dormant = 0;
  int64_t oper_up = kIfOperUp, oper_unknown = kIfOperUnknown;
  uint64_t ops_get_stats64 = 0, ops_get_stats = 0;
  uint64_t core_rx_dropped = 0, core_tx_dropped = 0, core_rx_nohandler = 0;
  uint64_t lstats_packets = 0, lstats_bytes = 0;
  // struct pcpu_sw_netstats (dev->tstats), for dev_get_tstats64().
  Slot tstats, pcpu_stat_type;
  uint64_t tstats_rx_packets = 0, tstats_rx_bytes = 0, tstats_tx_packets = 0, tstats_tx_bytes = 0;
  std::optional<int64_t> stat_type_tstats, stat_type_dstats;
  // IPv4: in_device->ifa_list, a NULL-terminated chain of in_ifaddr.
  uint64_t in_ifa_list = 0, ifa_next = 0, ifa_local = 0, ifa_prefixlen = 0;
  // IPv6: inet6_dev->addr_list of inet6_ifaddr.if_list.
  uint64_t in6_addr_list = 0, ifa6_if_list = 0, ifa6_addr = 0;
  Slot ifa6_prefix_len;
};

// drivers/net/virtio_net.c, from the module's own BTF.
struct InterfaceReader::VirtioLayout {
  uint64_t rq = 0, sq = 0;  // virtnet_info: arrays of receive_queue / send_queue
  Slot max_queue_pairs;
  uint64_t rq_size = 0, sq_size = 0;
  uint64_t rq_packets = 0, rq_bytes = 0, rq_drops = 0;
  uint64_t sq_packets = 0, sq_bytes = 0;
  std::optional<uint64_t> sq_tx_timeouts;  // 5.11+ (tx_timeout counted as tx_errors)
};

ProcNetDevCounters proc_net_dev_counters(const LinkStats& s) {
  // net/core/net-procfs.c dev_seq_printf_stats().
  return {s.rx_bytes,
          s.rx_packets,
          s.rx_errors,
          s.rx_dropped + s.rx_missed_errors,
          s.rx_fifo_errors,
          s.rx_length_errors + s.rx_over_errors + s.rx_crc_errors + s.rx_frame_errors,
          s.rx_compressed,
          s.multicast,
          s.tx_bytes,
          s.tx_packets,
          s.tx_errors,
          s.tx_dropped,
          s.tx_fifo_errors,
          s.collisions,
          s.tx_carrier_errors + s.tx_aborted_errors + s.tx_window_errors + s.tx_heartbeat_errors,
          s.tx_compressed};
}

std::string proc_net_dev_line(const InterfaceRow& row) {
  const ProcNetDevCounters c = proc_net_dev_counters(row.stats);
  return fmt::format(
      "{:>6}: {:7} {:7} {:4} {:4} {:4} {:5} {:10} {:9} {:8} {:7} {:4} {:4} {:4} {:5} {:7} {:10}",
      row.name, c.rx_bytes, c.rx_packets, c.rx_errs, c.rx_drop, c.rx_fifo, c.rx_frame,
      c.rx_compressed, c.rx_multicast, c.tx_bytes, c.tx_packets, c.tx_errs, c.tx_drop, c.tx_fifo,
      c.tx_colls, c.tx_carrier, c.tx_compressed);
}

std::string interface_flag_names(uint32_t flags) {
  static constexpr const char* kNames[] = {
      "UP",        "BROADCAST", "DEBUG",    "LOOPBACK", "POINTOPOINT", "NOTRAILERS", "RUNNING",
      "NOARP",     "PROMISC",   "ALLMULTI", "MASTER",   "SLAVE",       "MULTICAST",  "PORTSEL",
      "AUTOMEDIA", "DYNAMIC",   "LOWER_UP", "DORMANT",  "ECHO"};
  std::string out;
  for (size_t bit = 0; bit < std::size(kNames); ++bit) {
    if (!(flags & (1u << bit))) continue;
    if (!out.empty()) out += ",";
    out += kNames[bit];
  }
  return out;
}

Result<InterfaceReader> InterfaceReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto slot = [&](const char* type, const char* path) { return optional_slot(t, type, path); };
  auto require = [&](const char* type, const char* path) { return required_slot(t, type, path); };
  auto offset = [&](const char* type, const char* path) -> Result<uint64_t> {
    NFM_ASSIGN(Field f, t.member(type, path));
    return f.offset;
  };
  NFM_ASSIGN(l.init_net, kernel.symbol("init_net"));
  NFM_ASSIGN(l.dev_base_head, offset("net", "dev_base_head"));
  NFM_ASSIGN(l.dev_size, t.size_of("net_device"));
  NFM_ASSIGN(l.dev_list, require("net_device", "dev_list"));
  NFM_ASSIGN(l.name, require("net_device", "name"));
  NFM_ASSIGN(l.ifindex, require("net_device", "ifindex"));
  NFM_ASSIGN(l.mtu, require("net_device", "mtu"));
  NFM_ASSIGN(l.flags, require("net_device", "flags"));
  NFM_ASSIGN(l.gflags, require("net_device", "gflags"));
  NFM_ASSIGN(l.state, require("net_device", "state"));
  NFM_ASSIGN(l.operstate, require("net_device", "operstate"));
  NFM_ASSIGN(l.addr_len, require("net_device", "addr_len"));
  NFM_ASSIGN(l.dev_addr, require("net_device", "dev_addr"));
  NFM_ASSIGN(l.netdev_ops, require("net_device", "netdev_ops"));
  l.ip_ptr = slot("net_device", "ip_ptr");
  l.ip6_ptr = slot("net_device", "ip6_ptr");
  l.lstats = slot("net_device", "lstats");
  // netdev_priv(): recent kernels end net_device with a flexible priv[] array
  // and return dev->priv; before, the private area follows the struct at
  // ALIGN(sizeof(struct net_device), NETDEV_ALIGN).
  if (auto priv = t.member("net_device", "priv")) {
    l.priv = priv->offset;
  } else {
    l.priv = (l.dev_size + kNetdevAlign - 1) / kNetdevAlign * kNetdevAlign;
  }
  for (size_t i = 0; i < kDevStats; ++i) {
    NFM_ASSIGN(l.dev_stats[i],
               require("net_device", (std::string("stats.") + kDevStatNames[i]).c_str()));
  }
  // 5.18 (625788b58445 "net: add per-cpu storage and net->core_stats") moved
  // the core's drop counters from atomic_long_t members to per-cpu core_stats.
  l.core_stats = slot("net_device", "core_stats");
  if (l.core_stats.present) {
    NFM_ASSIGN(l.core_rx_dropped, offset("net_device_core_stats", "rx_dropped"));
    NFM_ASSIGN(l.core_tx_dropped, offset("net_device_core_stats", "tx_dropped"));
    NFM_ASSIGN(l.core_rx_nohandler, offset("net_device_core_stats", "rx_nohandler"));
  } else {
    l.old_rx_dropped = slot("net_device", "rx_dropped");
    l.old_tx_dropped = slot("net_device", "tx_dropped");
    l.old_rx_nohandler = slot("net_device", "rx_nohandler");
  }
  NFM_ASSIGN(l.link_start, t.enum_value("netdev_state_t", "__LINK_STATE_START"));
  NFM_ASSIGN(l.link_nocarrier, t.enum_value("netdev_state_t", "__LINK_STATE_NOCARRIER"));
  NFM_ASSIGN(l.link_dormant, t.enum_value("netdev_state_t", "__LINK_STATE_DORMANT"));
  if (auto v = t.enum_value("IF_OPER_UP")) l.oper_up = *v;
  if (auto v = t.enum_value("IF_OPER_UNKNOWN")) l.oper_unknown = *v;
  NFM_ASSIGN(l.ops_get_stats64, offset("net_device_ops", "ndo_get_stats64"));
  NFM_ASSIGN(l.ops_get_stats, offset("net_device_ops", "ndo_get_stats"));
  if (l.lstats.present) {
    NFM_ASSIGN(l.lstats_packets, offset("pcpu_lstats", "packets"));
    NFM_ASSIGN(l.lstats_bytes, offset("pcpu_lstats", "bytes"));
  }
  l.tstats = slot("net_device", "tstats");
  if (l.tstats.present) {
    NFM_ASSIGN(l.tstats_rx_packets, offset("pcpu_sw_netstats", "rx_packets"));
    NFM_ASSIGN(l.tstats_rx_bytes, offset("pcpu_sw_netstats", "rx_bytes"));
    NFM_ASSIGN(l.tstats_tx_packets, offset("pcpu_sw_netstats", "tx_packets"));
    NFM_ASSIGN(l.tstats_tx_bytes, offset("pcpu_sw_netstats", "tx_bytes"));
  }
  // 6.7+ drivers may leave per-cpu counters to the core (dev->pcpu_stat_type).
  l.pcpu_stat_type = slot("net_device", "pcpu_stat_type");
  if (auto v = t.enum_value("NETDEV_PCPU_STAT_TSTATS")) l.stat_type_tstats = *v;
  if (auto v = t.enum_value("NETDEV_PCPU_STAT_DSTATS")) l.stat_type_dstats = *v;
  NFM_ASSIGN(l.in_ifa_list, offset("in_device", "ifa_list"));
  NFM_ASSIGN(l.ifa_next, offset("in_ifaddr", "ifa_next"));
  NFM_ASSIGN(l.ifa_local, offset("in_ifaddr", "ifa_local"));
  NFM_ASSIGN(l.ifa_prefixlen, offset("in_ifaddr", "ifa_prefixlen"));
  NFM_ASSIGN(l.in6_addr_list, offset("inet6_dev", "addr_list"));
  NFM_ASSIGN(l.ifa6_if_list, offset("inet6_ifaddr", "if_list"));
  NFM_ASSIGN(l.ifa6_addr, offset("inet6_ifaddr", "addr"));
  NFM_ASSIGN(l.ifa6_prefix_len, require("inet6_ifaddr", "prefix_len"));
  return InterfaceReader(kernel, std::move(layout));
}

std::string InterfaceReader::function_name(uint64_t address) {
  if (auto it = function_names_.find(address); it != function_names_.end()) return it->second;
  auto sym = function_symbol_at(*kernel_, address);
  std::string name = sym ? sym->name : "";
  function_names_.emplace(address, name);
  return name;
}

bool InterfaceReader::read_device(uint64_t dev, InterfaceRow& row, InterfaceList& out,
                                  const InterfaceOptions& options) {
  const Layout& l = *layout_;
  buffer_.resize(l.dev_size);
  if (!kernel_->read(dev, buffer_.data(), buffer_.size())) return false;
  const std::span<const uint8_t> b(buffer_);
  row.device = dev;
  row.name = load_chars(b, l.name);
  row.ifindex = static_cast<int32_t>(load_signed(b, l.ifindex));
  row.mtu = static_cast<uint32_t>(load_unsigned(b, l.mtu));

  // net/core/dev.c dev_get_flags(): the device's flags with the user-set
  // PROMISC/ALLMULTI from gflags, and RUNNING/LOWER_UP/DORMANT from link state.
  const uint32_t dev_flags = static_cast<uint32_t>(load_unsigned(b, l.flags));
  const uint32_t gflags = static_cast<uint32_t>(load_unsigned(b, l.gflags));
  const uint64_t state = load_unsigned(b, l.state);
  auto bit = [&](int64_t n) { return n >= 0 && n < 64 && (state >> n) & 1; };
  uint32_t flags =
      (dev_flags & ~(kIffPromisc | kIffAllmulti | kIffRunning | kIffLowerUp | kIffDormant)) |
      (gflags & (kIffPromisc | kIffAllmulti));
  if (bit(l.link_start)) {
    const auto oper = static_cast<int64_t>(load_unsigned(b, l.operstate));
    if (oper == l.oper_up || oper == l.oper_unknown) flags |= kIffRunning;
    if (!bit(l.link_nocarrier)) flags |= kIffLowerUp;
    if (bit(l.link_dormant)) flags |= kIffDormant;
  }
  row.flags = flags;
  row.up = dev_flags & kIffUp;

  const uint64_t addr_len = std::min<uint64_t>(load_unsigned(b, l.addr_len), kMaxAddrLen);
  const uint64_t dev_addr = load_unsigned(b, l.dev_addr);
  if (addr_len && dev_addr) {
    uint8_t mac[kMaxAddrLen];
    if (kernel_->read(dev_addr, mac, addr_len)) {
      for (uint64_t i = 0; i < addr_len; ++i)
        row.mac += fmt::format("{}{:02x}", i ? ":" : "", mac[i]);
    } else {
      ++out.address_errors;
    }
  }

  // The rest reads other objects: keep what we need from this one first.
  const uint64_t in_dev = load_unsigned(b, l.ip_ptr);
  const uint64_t in6_dev = load_unsigned(b, l.ip6_ptr);
  read_stats(dev, row, out, options);
  if (in_dev) read_ipv4(in_dev, row, out, options);
  if (in6_dev) read_ipv6(in6_dev, row, out, options);
  return true;
}

void InterfaceReader::read_ipv4(uint64_t in_dev, InterfaceRow& row, InterfaceList& out,
                                const InterfaceOptions& options) {
  const Layout& l = *layout_;
  auto first = kernel_->read_pointer(in_dev + l.in_ifa_list);
  if (!first) {
    ++out.address_errors;
    return;
  }
  std::unordered_set<uint64_t> seen;
  for (uint64_t ifa = *first; ifa;) {
    if (!plausible_kernel_pointer(ifa) || seen.size() >= options.max_addresses ||
        !seen.insert(ifa).second) {
      ++out.address_errors;
      return;
    }
    uint8_t local[4];
    auto prefix = kernel_->read_value<uint8_t>(ifa + l.ifa_prefixlen);
    auto next = kernel_->read_pointer(ifa + l.ifa_next);
    if (!prefix || !next || !kernel_->read(ifa + l.ifa_local, local, sizeof local)) {
      ++out.address_errors;
      return;
    }
    row.ipv4.push_back(cidr(AF_INET, local, *prefix));
    ifa = *next;
  }
}

void InterfaceReader::read_ipv6(uint64_t in6_dev, InterfaceRow& row, InterfaceList& out,
                                const InterfaceOptions& options) {
  const Layout& l = *layout_;
  bool failed = false;
  auto walk = walk_list(kernel_->space(), in6_dev + l.in6_addr_list, options.max_addresses,
                        [&](uint64_t node) {
                          const uint64_t ifa = node - l.ifa6_if_list;
                          uint8_t addr[16];
                          uint32_t prefix = 0;
                          if (!kernel_->read(ifa + l.ifa6_addr, addr, sizeof addr) ||
                              !kernel_->read(ifa + l.ifa6_prefix_len.offset, &prefix,
                                             std::min<uint64_t>(4, l.ifa6_prefix_len.size))) {
                            failed = true;
                            return true;
                          }
                          row.ipv6.push_back(cidr(AF_INET6, addr, prefix));
                          return true;
                        });
  if (failed || !walk.ok()) ++out.address_errors;
}

bool InterfaceReader::sum_lstats(uint64_t percpu, uint64_t& packets, uint64_t& bytes) {
  // struct pcpu_lstats per CPU (dev_lstats_read()): u64_stats_t packets, bytes.
  const Layout& l = *layout_;
  if (!percpu) return false;
  bool ok = true;
  for (uint64_t offset : kernel_->percpu_offsets()) {
    auto p = kernel_->read_value<uint64_t>(percpu + offset + l.lstats_packets);
    auto by = kernel_->read_value<uint64_t>(percpu + offset + l.lstats_bytes);
    if (!p || !by) {
      ok = false;
      continue;
    }
    packets += *p;
    bytes += *by;
  }
  return ok;
}

Result<std::shared_ptr<const InterfaceReader::VirtioLayout>> InterfaceReader::virtio_layout() {
  if (virtio_) return virtio_;
  if (virtio_error_) return *virtio_error_;
  // virtnet_info and its queues are private to the module: only its own BTF
  // (5.11+, CONFIG_DEBUG_INFO_BTF_MODULES) describes them.
  auto resolve = [&]() -> Result<std::shared_ptr<const VirtioLayout>> {
    NFM_ASSIGN(Types t, kernel_->module_types("virtio_net"));
    auto v = std::make_shared<VirtioLayout>();
    auto off = [&](TypeRef type, const char* path) -> Result<uint64_t> {
      NFM_ASSIGN(Field f, t.member(type, path));
      return f.offset;
    };
    NFM_ASSIGN(TypeRef vi, t.find_struct("virtnet_info"));
    NFM_ASSIGN(Field rq, t.member(vi, "rq"));
    NFM_ASSIGN(Field sq, t.member(vi, "sq"));
    NFM_ASSIGN(Field pairs, t.member(vi, "max_queue_pairs"));
    v->rq = rq.offset, v->sq = sq.offset, v->max_queue_pairs = slot_of(pairs);
    NFM_ASSIGN(TypeRef rq_type, t.pointee(rq.type));
    NFM_ASSIGN(TypeRef sq_type, t.pointee(sq.type));
    NFM_ASSIGN(v->rq_size, t.size_of(rq_type));
    NFM_ASSIGN(v->sq_size, t.size_of(sq_type));
    NFM_ASSIGN(v->rq_packets, off(rq_type, "stats.packets"));
    NFM_ASSIGN(v->rq_bytes, off(rq_type, "stats.bytes"));
    NFM_ASSIGN(v->rq_drops, off(rq_type, "stats.drops"));
    NFM_ASSIGN(v->sq_packets, off(sq_type, "stats.packets"));
    NFM_ASSIGN(v->sq_bytes, off(sq_type, "stats.bytes"));
    // Newer drivers count transmit timeouts ("virtio-net: support transmit
    // timeout") and report them as tx_errors.
    if (auto f = off(sq_type, "stats.tx_timeouts")) v->sq_tx_timeouts = *f;
    return std::shared_ptr<const VirtioLayout>(std::move(v));
  };
  auto layout = resolve();
  if (!layout) {
    virtio_error_ = layout.error();
    return layout.error();
  }
  virtio_ = *layout;
  return virtio_;
}

bool InterfaceReader::read_virtnet_stats(uint64_t dev, const VirtioLayout& v, LinkStats& s,
                                         const InterfaceOptions& options) {
  // drivers/net/virtio_net.c virtnet_stats(): per-queue u64_stats summed over
  // max_queue_pairs, then four counters from dev->stats.
  const uint64_t vi = dev + layout_->priv;
  uint8_t pairs_bytes[8] = {};
  auto rq = kernel_->read_pointer(vi + v.rq);
  auto sq = kernel_->read_pointer(vi + v.sq);
  if (!rq || !sq || v.max_queue_pairs.size > sizeof pairs_bytes ||
      !kernel_->read(vi + v.max_queue_pairs.offset, pairs_bytes, v.max_queue_pairs.size))
    return false;
  FieldSlot pairs_slot = v.max_queue_pairs;
  pairs_slot.offset = 0;
  const uint64_t n = std::min<uint64_t>(load_unsigned(pairs_bytes, pairs_slot), options.max_queues);
  if (n && (!*rq || !*sq)) return false;
  bool ok = true;
  auto add = [&](uint64_t va, uint64_t& into) {
    if (auto x = kernel_->read_value<uint64_t>(va))
      into += *x;
    else
      ok = false;
  };
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t r = *rq + i * v.rq_size, t = *sq + i * v.sq_size;
    add(t + v.sq_packets, s.tx_packets);
    add(t + v.sq_bytes, s.tx_bytes);
    if (v.sq_tx_timeouts) add(t + *v.sq_tx_timeouts, s.tx_errors);
    add(r + v.rq_packets, s.rx_packets);
    add(r + v.rq_bytes, s.rx_bytes);
    add(r + v.rq_drops, s.rx_dropped);
  }
  const std::span<const uint8_t> b(buffer_);
  LinkStats base;
  for (size_t i = 0; i < kDevStats; ++i)
    *stat_field(base, i) = load_unsigned(b, layout_->dev_stats[i]);
  s.tx_dropped = base.tx_dropped;
  s.tx_fifo_errors = base.tx_fifo_errors;
  s.rx_length_errors = base.rx_length_errors;
  s.rx_frame_errors = base.rx_frame_errors;
  return ok;
}

void InterfaceReader::read_stats(uint64_t dev, InterfaceRow& row, InterfaceList& out,
                                 const InterfaceOptions& options) {
  // net/core/dev.c dev_get_stats(): the driver's ndo_get_stats64, else its
  // ndo_get_stats, else dev->stats; then the core's own drop counters.
  const Layout& l = *layout_;
  const std::span<const uint8_t> b(buffer_);
  LinkStats& s = row.stats;
  const uint64_t ops = load_unsigned(b, l.netdev_ops);
  uint64_t get_stats64 = 0, get_stats = 0;
  if (ops) {
    auto p64 = kernel_->read_pointer(ops + l.ops_get_stats64);
    auto p = kernel_->read_pointer(ops + l.ops_get_stats);
    if (!p64 || !p) {
      ++out.stats_errors;
      row.stats_exact = false;
      return;
    }
    get_stats64 = *p64, get_stats = *p;
  }
  auto from_dev_stats = [&] {
    for (size_t i = 0; i < kDevStats; ++i) *stat_field(s, i) = load_unsigned(b, l.dev_stats[i]);
  };
  bool ok = true;
  if (get_stats64) {
    row.stats_source = function_name(get_stats64);
    uint64_t packets = 0, bytes = 0;
    if (row.stats_source == "loopback_get_stats64" && l.lstats.present) {
      // drivers/net/loopback.c: every packet is sent and received once.
      ok = sum_lstats(load_unsigned(b, l.lstats), packets, bytes);
      s.rx_packets = s.tx_packets = packets;
      s.rx_bytes = s.tx_bytes = bytes;
    } else if (row.stats_source == "dummy_get_stats64" && l.lstats.present) {
      // drivers/net/dummy.c: transmits only.
      ok = sum_lstats(load_unsigned(b, l.lstats), packets, bytes);
      s.tx_packets = packets;
      s.tx_bytes = bytes;
    } else if (row.stats_source == "dev_get_tstats64" && l.tstats.present) {
      // net/core/dev.c: dev->stats plus the per-cpu software counters.
      from_dev_stats();
      const uint64_t percpu = load_unsigned(b, l.tstats);
      ok = percpu != 0;
      for (uint64_t offset : kernel_->percpu_offsets()) {
        if (!percpu) break;
        const uint64_t c = percpu + offset;
        auto rp = kernel_->read_value<uint64_t>(c + l.tstats_rx_packets);
        auto rb = kernel_->read_value<uint64_t>(c + l.tstats_rx_bytes);
        auto tp = kernel_->read_value<uint64_t>(c + l.tstats_tx_packets);
        auto tb = kernel_->read_value<uint64_t>(c + l.tstats_tx_bytes);
        if (!rp || !rb || !tp || !tb) {
          ok = false;
          continue;
        }
        s.rx_packets += *rp, s.rx_bytes += *rb, s.tx_packets += *tp, s.tx_bytes += *tb;
      }
    } else if (row.stats_source == "virtnet_stats") {
      auto v = virtio_layout();
      if (v) {
        ok = read_virtnet_stats(dev, **v, s, options);
      } else {
        from_dev_stats();
        row.stats_exact = false;
        row.stats_note = "virtio_net's private counters: " + v.error().message;
        ++out.stats_unsupported;
      }
    } else {
      from_dev_stats();
      row.stats_exact = false;
      ++out.stats_unsupported;
      if (row.stats_source.empty()) row.stats_source = fmt::format("{:#x}", get_stats64);
      row.stats_note = "unknown ndo_get_stats64 " + row.stats_source;
    }
  } else if (get_stats) {
    from_dev_stats();
    row.stats_exact = false;
    ++out.stats_unsupported;
    row.stats_source = function_name(get_stats);
    if (row.stats_source.empty()) row.stats_source = fmt::format("{:#x}", get_stats);
    row.stats_note = "unknown ndo_get_stats " + row.stats_source;
  } else {
    from_dev_stats();
    row.stats_source = "dev->stats";
    // Newer cores fold in per-cpu counters of drivers that declare them
    // (dev_get_stats()'s pcpu_stat_type fallbacks), which we do not read yet.
    const auto type = static_cast<int64_t>(load_unsigned(b, l.pcpu_stat_type));
    if (l.pcpu_stat_type.present &&
        (type == l.stat_type_tstats.value_or(-1) || type == l.stat_type_dstats.value_or(-1))) {
      row.stats_exact = false;
      row.stats_note = "per-cpu counters kept by the core (pcpu_stat_type) are not read";
      ++out.stats_unsupported;
    }
  }

  if (l.core_stats.present) {
    if (const uint64_t percpu = load_unsigned(b, l.core_stats)) {
      for (uint64_t offset : kernel_->percpu_offsets()) {
        const uint64_t c = percpu + offset;
        auto rx = kernel_->read_value<uint64_t>(c + l.core_rx_dropped);
        auto tx = kernel_->read_value<uint64_t>(c + l.core_tx_dropped);
        auto nh = kernel_->read_value<uint64_t>(c + l.core_rx_nohandler);
        if (!rx || !tx || !nh) {
          ok = false;
          continue;
        }
        s.rx_dropped += *rx, s.tx_dropped += *tx, s.rx_nohandler += *nh;
      }
    }
  } else {
    s.rx_dropped += load_unsigned(b, l.old_rx_dropped);
    s.tx_dropped += load_unsigned(b, l.old_tx_dropped);
    s.rx_nohandler += load_unsigned(b, l.old_rx_nohandler);
  }
  if (!ok) {
    ++out.stats_errors;
    row.stats_exact = false;
    if (row.stats_note.empty()) row.stats_note = "a counter could not be read";
  }
}

Result<InterfaceList> InterfaceReader::list(const InterfaceOptions& options) {
  const Layout& l = *layout_;
  InterfaceList out;
  function_names_.clear();
  virtio_error_.reset();  // a module may have been loaded since
  std::vector<uint64_t> devices;
  out.walk = walk_list(kernel_->space(), l.init_net + l.dev_base_head, options.max_devices,
                       [&](uint64_t node) {
                         devices.push_back(node - l.dev_list.offset);
                         return true;
                       });
  for (uint64_t dev : devices) {
    InterfaceRow row;
    if (!read_device(dev, row, out, options)) {
      ++out.row_errors;
      continue;
    }
    out.rows.push_back(std::move(row));
  }
  return out;
}

}  // namespace nfm
