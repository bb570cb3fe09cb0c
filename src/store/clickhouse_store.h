// The ClickHouse frame store, for fleets: --emit clickhouse:http://HOST:8123/DB.
// Frames go over ClickHouse's HTTP interface as batched `INSERT ... FORMAT
// JSONEachRow`, one table per feature plus `frames` (MergeTree, ordered by VM and
// time), created if missing. A sender thread delivers; while the server is down
// it retries with back-off and holds frames in a bounded in-memory buffer
// (SinkOptions::buffer_frames), dropping the oldest when full (counted).
// Uses only what ClickHouse 18.16 (Debian 12) has: no DateTime64 (times are
// UInt64 ns plus a DateTime), no LowCardinality. Cluster setup: docs/stores.md.
#pragma once

#include <memory>
#include <string>

#include "store/frame_sink.h"
#include "store/frame_store.h"

namespace nfm {

// Where a ClickHouse store lives: "http://[USER[:PASSWORD]@]HOST:PORT/DB".
struct ClickHouseUrl {
  std::string base;      // "http://HOST:PORT/" (with credentials, if given)
  std::string database;  // "default" when the path is empty
};
Result<ClickHouseUrl> parse_clickhouse_url(std::string_view url);

Result<std::unique_ptr<FrameSink>> open_clickhouse_sink(std::string_view url,
                                                        const SinkOptions& options = {});
// Checks that the server answers and the frames table exists.
Result<std::unique_ptr<FrameStore>> open_clickhouse_store(std::string_view url);

}  // namespace nfm
