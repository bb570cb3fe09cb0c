// SQL over VMs: an in-memory SQLite database whose tables are the snapshots'
// sections (sql_tables.h) and osquery's views of them (osquery_tables.h). Each
// statement sees its own crawl of what it reads: live guests are crawled afresh
// by every statement, once per VM and feature however often a join reads them.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "query/snapshots.h"
#include "util/result.h"

namespace nfm::query {

// A value as SQLite returns it: NULL, INTEGER, REAL or TEXT (BLOBs come back as TEXT).
using SqlValue = std::variant<std::monostate, int64_t, double, std::string>;

struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<SqlValue>> rows;
};

class QueryEngine {
 public:
  static Result<std::unique_ptr<QueryEngine>> open(std::unique_ptr<SnapshotSource> source);
  ~QueryEngine();
  QueryEngine(const QueryEngine&) = delete;
  QueryEngine& operator=(const QueryEngine&) = delete;

  // Runs each statement of `sql` in turn; the results of those that return
  // columns. Fails on the first statement SQLite rejects, with its message.
  Result<std::vector<QueryResult>> run(std::string_view sql);

  SnapshotSource& source() { return *source_; }
  // Every table and view: name, and the SQL that declares its columns.
  Result<std::vector<std::pair<std::string, std::string>>> tables();

 private:
  QueryEngine(std::unique_ptr<SnapshotSource> source, sqlite3* db)
      : source_(std::move(source)), db_(db) {}
  Result<QueryResult> step_all(sqlite3_stmt* statement);
  // User statements each start a new crawl and count in the `frames` table.
  Result<std::vector<QueryResult>> execute(std::string_view sql, bool user_statements);

  std::unique_ptr<SnapshotSource> source_;
  sqlite3* db_;
};

}  // namespace nfm::query
