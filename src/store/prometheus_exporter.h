// The Prometheus sink: --emit prometheus:[ADDR:]PORT serves /metrics in the
// Prometheus text format (0.0.4) from the newest frame of each VM: per-VM and
// per-process gauges and counters (CPU seconds, RSS, threads, socket counts,
// interface bytes, memory, load, crawl duration and errors, frames). Bound to
// 127.0.0.1 unless an address is given. Metric list: docs/stores.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "store/frame_sink.h"

namespace nfm {

// "9464", "0.0.0.0:9464", "[::1]:9464"; port 0 picks a free one.
struct ListenAddress {
  std::string address = "127.0.0.1";
  uint16_t port = 0;
};
Result<ListenAddress> parse_listen_address(std::string_view spec);

class PrometheusExporter : public FrameSink {
 public:
  // The port actually bound (useful with port 0).
  virtual uint16_t port() const = 0;
  // The /metrics text as it would be served now.
  virtual std::string render() const = 0;
};

Result<std::unique_ptr<PrometheusExporter>> open_prometheus_exporter(std::string_view spec);

// Prometheus text-format label value escaping: \ " and newline; invalid UTF-8 replaced.
std::string prometheus_label_value(std::string_view value);

}  // namespace nfm
