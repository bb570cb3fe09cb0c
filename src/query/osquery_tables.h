// osquery's tables over nfm's: SQL views on the nfm_<feature> tables (sql_tables.h)
// with osquery's table names, column names, units and meanings
// (https://osquery.io/schema), plus `vm`, `host` and `time` first. A column nfm
// cannot fill is NULL (docs/query.md says which and why). The mapping is the view
// text itself: the columns still come from the feature declarations.
#pragma once

#include <sqlite3.h>

#include <string_view>
#include <vector>

#include "util/result.h"

namespace nfm::query {

struct OsqueryTable {
  std::string_view name;
  std::string_view doc;
  std::string_view select;  // the view's SELECT
};
const std::vector<OsqueryTable>& osquery_tables();

// The SQL functions the views use (nfm_cidr_address, nfm_cidr_mask,
// nfm_cidr_broadcast, nfm_join), then the views.
Result<void> create_osquery_views(sqlite3* db);

}  // namespace nfm::query
