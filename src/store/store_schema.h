// The stores' feature tables: one per registered feature, its columns those the
// feature declares (features/*/rows.h). The SQLite and the ClickHouse stores both
// create and fill their tables from this list. Column names are the frame's JSON
// keys (docs/frame-schema.md), so a column means what the key means; values come
// from the features' declarations (FeatureInfo::each_row), so the tables hold exactly
// what `nfm frame` prints.
#pragma once

#include <any>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "frame/frame.h"
#include "util/result.h"

namespace nfm::store {

using ColumnType = schema::Type;

// A feature's column in the stores: the feature's own declaration (schema/fields.h).
struct Column {
  std::string name;  // the JSON key
  ColumnType type;
  bool nullable = false;    // JSON null is a value (cache_kb, a socket's pid)
  nlohmann::json fallback;  // for keys frame_json leaves out (modules' "permanent")
};

struct FeatureTable {
  Feature feature;
  std::string name;     // table name = the frame's section name
  bool object = false;  // the section is one object (uname, uptime, meminfo), not rows
  std::vector<Column> columns;
};

// Every feature's table, in frame order.
const std::vector<FeatureTable>& feature_tables();

// Appends a row value's identity (FeatureInfo::each_row's values): typed and
// length-prefixed, so that rows with other values never give the same bytes (a guest
// cannot make one row stand for another). Row versions compare rows by these bytes.
void append_value_key(std::string& out, const nlohmann::json& value);

// Row versions (docs/stores.md), as both stores keep them: one VM's live rows of one
// table, by their values' key (append_value_key) -> the id of their version.
using LiveRows = std::unordered_map<std::string, int64_t>;
struct VersionWriter {
  // A row that appeared or changed: writes its version, returns its id.
  std::function<Result<int64_t>(const std::vector<nlohmann::json>& values)> add;
  // A live row the frame no longer has: its version ends.
  std::function<Result<void>(int64_t row_id)> end;
};
// Matches one section's rows with `live` (the VM's previous frame of this table): a
// row seen before keeps its version, a new one gets `writer.add`'s, the rows gone are
// passed to `writer.end`, and `live` becomes this frame's. Returns the frame's rows in
// order as runs [first row id, count].
Result<nlohmann::json> match_versions(const FeatureTable& t, const std::any& section,
                                      LiveRows& live, const VersionWriter& writer);

}  // namespace nfm::store
