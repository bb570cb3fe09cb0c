// The stores' feature tables: one per registered feature, its columns those the
// feature declares (features/*/rows.h). The SQLite and the ClickHouse stores both
// create and fill their tables from this list. Column names are the frame's JSON
// keys (docs/frame-schema.md), so a column means what the key means; values come
// from frame_json, so the tables hold exactly what `nfm frame` prints.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "frame/frame.h"

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

// The rows of `table` in a frame's JSON (an object section is one row); empty
// when the frame does not have the section.
std::vector<const nlohmann::json*> section_rows(const FeatureTable& table,
                                                const nlohmann::json& frame);

// A row's value for `column`: the key's value, else the column's fallback.
const nlohmann::json& column_value(const Column& column, const nlohmann::json& row);

// Tracks kmsg sequence numbers per VM: the kmsg tables hold each record once,
// from the first frame that showed it (the ring repeats them in every frame).
class KmsgDedup {
 public:
  // Looks at a frame's kmsg rows. The guest rebooted (its log started over) when
  // the newest seq is below the last one stored, or when the record with that seq
  // has another timestamp: then every record is new again.
  void begin_frame(const std::string& vm, const nlohmann::json& kmsg_rows);
  // True if a record with this seq was not stored for this VM yet.
  bool is_new(uint64_t seq) const { return !have_ || seq > last_.seq; }
  void end_frame(const std::string& vm);
  void forget(const std::string& vm) { last_seen_.erase(vm); }

 private:
  struct Last {
    uint64_t seq = 0, ts_ns = 0;
  };
  std::map<std::string, Last> last_seen_;
  bool have_ = false;
  Last last_, max_;
  bool any_ = false;
};

// Stable 63-bit id of a frame (its VM and time), for stores without sequences.
int64_t frame_key(const FrameMeta& meta);

// Appends a row value's identity (FeatureInfo::each_row's values): typed and
// length-prefixed, so that rows with other values never give the same bytes (a guest
// cannot make one row stand for another). Row versions compare rows by these bytes.
void append_value_key(std::string& out, const nlohmann::json& value);

}  // namespace nfm::store
