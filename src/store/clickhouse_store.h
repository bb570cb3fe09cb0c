// The ClickHouse frame store, for fleets: --emit clickhouse:http://HOST:8123/DB.
// Frames go over ClickHouse's HTTP interface as batched `INSERT ... FORMAT
// JSONEachRow`, one table per feature plus `frames` and `row_ends` (MergeTree,
// ordered by VM and time), created if missing. Feature tables hold row versions,
// insert-only: a row once per change, its end in `row_ends`; a frame is its meta
// and runs of row ids (docs/stores.md). A sender thread delivers; while the server is down
// it retries with back-off and holds frames in a bounded in-memory buffer
// (SinkOptions::buffer_frames), dropping the oldest when full (counted).
// Uses only what ClickHouse 18.16 (Debian 12) has: no DateTime64 (times are
// UInt64 ns plus a DateTime), no LowCardinality. Cluster setup: docs/stores.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

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

// A sharded, replicated store (docs/stores.md): on every node of `cluster` (its
// <remote_servers>, ZooKeeper and the {shard}/{replica} macros configured), local
// ReplicatedMergeTree tables NAME_local and, under the names nfm writes and reads,
// Distributed tables over them sharded by VM. The statements, in order:
std::vector<std::string> clickhouse_cluster_ddl(const std::string& database,
                                                const std::string& cluster);
// Runs them through the node at `url` (ON CLUSTER: every node gets them), calling
// `progress` with each statement first.
Result<void> init_clickhouse_cluster(std::string_view url, const std::string& cluster,
                                     const std::function<void(const std::string&)>& progress);

}  // namespace nfm
