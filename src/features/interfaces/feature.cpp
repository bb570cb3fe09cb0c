// The interfaces feature: its columns and its place in the frame.
#include "features/feature.h"
#include "features/interfaces/interfaces.h"

namespace nfm {

namespace {

using R = InterfaceRow;

// A /proc/net/dev column: written from the counters /proc/net/dev derives from
// the link stats, read back into the one LinkStats field that the column maps
// to (sums land in their first term), so that writing again gives the same value.
schema::Field<R> counter(std::string_view name, uint64_t ProcNetDevCounters::*column,
                         uint64_t LinkStats::*stat, std::string_view doc) {
  return schema::custom_field<R>(
      schema::Column{.name = name, .type = schema::Type::uint64, .doc = doc},
      [column](const R& r) { return schema::json(proc_net_dev_counters(r.stats).*column); },
      [stat](R& r, const schema::json& v, const std::string& path) {
        r.stats.*stat = schema::read_integer<uint64_t>(v, path);
      });
}

}  // namespace

const schema::Fields<InterfaceRow>& interface_fields() {
  using schema::field;
  using C = ProcNetDevCounters;
  using S = LinkStats;
  static const schema::Fields<InterfaceRow> fields{{
      field("name", &R::name, "interface name"),
      field("ifindex", &R::ifindex, "interface index"),
      field("mac", &R::mac, "hardware address (\"\" if none)"),
      field("mtu", &R::mtu, "MTU", "bytes"),
      field("flags", &R::flags, "IFF_* flags as dev_get_flags() reports them"),
      field("up", &R::up, "IFF_UP"),
      field("ipv4", &R::ipv4, "IPv4 addresses with prefix length, in ifa_list order"),
      field("ipv6", &R::ipv6, "IPv6 addresses with prefix length, in addr_list order"),
      counter("rx_bytes", &C::rx_bytes, &S::rx_bytes, "/proc/net/dev receive bytes"),
      counter("rx_packets", &C::rx_packets, &S::rx_packets, "/proc/net/dev receive packets"),
      counter("rx_errors", &C::rx_errs, &S::rx_errors, "/proc/net/dev receive errs"),
      counter("rx_dropped", &C::rx_drop, &S::rx_dropped, "/proc/net/dev receive drop"),
      counter("rx_fifo_errors", &C::rx_fifo, &S::rx_fifo_errors, "/proc/net/dev receive fifo"),
      counter("rx_frame_errors", &C::rx_frame, &S::rx_frame_errors, "/proc/net/dev receive frame"),
      counter("rx_compressed", &C::rx_compressed, &S::rx_compressed,
              "/proc/net/dev receive compressed"),
      counter("multicast", &C::rx_multicast, &S::multicast, "/proc/net/dev receive multicast"),
      counter("tx_bytes", &C::tx_bytes, &S::tx_bytes, "/proc/net/dev transmit bytes"),
      counter("tx_packets", &C::tx_packets, &S::tx_packets, "/proc/net/dev transmit packets"),
      counter("tx_errors", &C::tx_errs, &S::tx_errors, "/proc/net/dev transmit errs"),
      counter("tx_dropped", &C::tx_drop, &S::tx_dropped, "/proc/net/dev transmit drop"),
      counter("tx_fifo_errors", &C::tx_fifo, &S::tx_fifo_errors, "/proc/net/dev transmit fifo"),
      counter("collisions", &C::tx_colls, &S::collisions, "/proc/net/dev transmit colls"),
      counter("tx_carrier_errors", &C::tx_carrier, &S::tx_carrier_errors,
              "/proc/net/dev transmit carrier"),
      counter("tx_compressed", &C::tx_compressed, &S::tx_compressed,
              "/proc/net/dev transmit compressed"),
      field("stats_source", &R::stats_source,
            "whose counters these are: the driver's ndo_get_stats64 symbol, or dev->stats"),
      schema::optional_field("stats_exact", &R::stats_exact, true,
                             "false when the driver keeps counters nfm cannot read"),
      schema::custom_field<R>(
          schema::Column{.name = "stats_note",
                         .type = schema::Type::text,
                         .doc = "why the counters are not exact (only when they are not)",
                         .optional = true,
                         .fallback = ""},
          [](const R& r) { return r.stats_exact ? schema::omitted() : schema::json(r.stats_note); },
          [](R& r, const schema::json& v, const std::string& path) {
            r.stats_note = schema::read_string(v, path);
          }),
  }};
  return fields;
}

NFM_FEATURE(interfaces) {
  FeatureInfo f{.name = "interfaces",
                .aliases = {"ifconfig"},
                .doc = "network interfaces, their addresses and /proc/net/dev counters",
                .order = 80};
  set_rows_codec(f, &InterfaceList::rows, interface_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    InterfaceReader* reader = feature_reader<InterfaceReader>(ctx, "interfaces", status);
    if (!reader) return {};
    auto r = reader->list(ctx.options<InterfaceOptions>("interfaces"));
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.walk = walk_end_name(r->walk.end);
    status.count_error("row_errors", r->row_errors);
    status.count_error("address_errors", r->address_errors);
    status.count_error("stats_errors", r->stats_errors);
    status.count_skipped("stats_unsupported", r->stats_unsupported);
    status.rows = r->rows.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
