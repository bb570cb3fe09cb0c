// --emit and --store specs to sinks and stores.
#include <fmt/core.h>

#include "store/clickhouse_store.h"
#include "store/frame_sink.h"
#include "store/frame_store.h"
#include "store/jsonl_sink.h"
#include "store/prometheus_exporter.h"
#include "store/sqlite_store.h"

namespace nfm {

namespace {

// "scheme:rest" -> rest, if spec has that scheme.
bool take_scheme(std::string_view spec, std::string_view scheme, std::string_view& rest) {
  if (spec.size() <= scheme.size() || spec.substr(0, scheme.size()) != scheme ||
      spec[scheme.size()] != ':')
    return false;
  rest = spec.substr(scheme.size() + 1);
  return true;
}

}  // namespace

Result<std::unique_ptr<FrameSink>> open_sink(std::string_view spec, const SinkOptions& options) {
  std::string_view rest;
  if (spec == "stdout") return open_stdout_sink();
  if (take_scheme(spec, "file", rest)) return open_file_sink(std::string(rest), options);
  if (take_scheme(spec, "sqlite", rest)) return open_sqlite_sink(std::string(rest), options);
  if (take_scheme(spec, "clickhouse", rest)) return open_clickhouse_sink(rest, options);
  if (take_scheme(spec, "prometheus", rest)) {
    NFM_ASSIGN(auto exporter, open_prometheus_exporter(rest));
    return std::unique_ptr<FrameSink>(std::move(exporter));
  }
  return make_error(
      Errc::invalid_argument,
      fmt::format("--emit '{}': unknown sink (expected stdout, file:PATH, sqlite:PATH, "
                  "clickhouse:http://HOST:PORT/DB or prometheus:[ADDR:]PORT)",
                  spec));
}

Result<std::unique_ptr<FrameStore>> open_store(std::string_view spec) {
  std::string_view rest;
  if (take_scheme(spec, "sqlite", rest)) return open_sqlite_store(std::string(rest));
  if (take_scheme(spec, "clickhouse", rest)) return open_clickhouse_store(rest);
  return make_error(Errc::invalid_argument,
                    fmt::format("--store '{}': unknown store (expected sqlite:PATH or "
                                "clickhouse:http://HOST:PORT/DB)",
                                spec));
}

}  // namespace nfm
