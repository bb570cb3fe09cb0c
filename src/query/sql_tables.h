// The SQL tables over snapshots: one SQLite virtual table per feature,
// `nfm_<feature>`, whose columns are `vm`, `host`, `time` and then exactly the
// feature's declared columns (features/*/feature.cpp), plus `frames`, one row per
// section a statement crawled or loaded. Equality on `vm` is pushed down (only
// that VM is read), and so is equality on `pid` for the per-process features that
// can narrow their crawl (open_files, memory_maps).
#pragma once

#include <sqlite3.h>

#include <string>
#include <vector>

#include "features/feature.h"
#include "query/snapshots.h"
#include "util/result.h"

namespace nfm::query {

// A table's column as SQL sees it.
struct SqlColumn {
  std::string name;
  std::string type;  // INTEGER, REAL, TEXT
  std::string doc;
};

// nfm_<feature> for every registered feature, and `frames`.
struct SqlTable {
  std::string name;
  std::string doc;
  std::vector<SqlColumn> columns;
};
const std::vector<SqlTable>& feature_sql_tables();

// Registers the tables in `db` (eponymous virtual tables: no CREATE needed).
// `source` must outlive `db`.
Result<void> register_feature_tables(sqlite3* db, SnapshotSource& source);

}  // namespace nfm::query
