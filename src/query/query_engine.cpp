#include "query/query_engine.h"

#include <fmt/core.h>

#include "query/osquery_tables.h"
#include "query/sql_tables.h"

namespace nfm::query {

namespace {

Error sql_error(sqlite3* db) {
  return make_error(Errc::invalid_argument, fmt::format("SQL: {}", sqlite3_errmsg(db)));
}

}  // namespace

Result<std::unique_ptr<QueryEngine>> QueryEngine::open(std::unique_ptr<SnapshotSource> source) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return make_error(Errc::io, "cannot open an in-memory SQLite database");
  }
  // The engine owns db from here: its destructor closes it.
  std::unique_ptr<QueryEngine> engine(new QueryEngine(std::move(source), db));
  NFM_TRY(register_feature_tables(db, *engine->source_));
  NFM_TRY(create_osquery_views(db));
  return engine;
}

QueryEngine::~QueryEngine() {
  sqlite3_close(db_);
}

Result<QueryResult> QueryEngine::step_all(sqlite3_stmt* statement) {
  QueryResult result;
  const int columns = sqlite3_column_count(statement);
  for (int i = 0; i < columns; ++i) result.columns.emplace_back(sqlite3_column_name(statement, i));
  int rc;
  while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
    std::vector<SqlValue>& row = result.rows.emplace_back();
    row.reserve(static_cast<size_t>(columns));
    for (int i = 0; i < columns; ++i) {
      switch (sqlite3_column_type(statement, i)) {
        case SQLITE_NULL:
          row.emplace_back(std::monostate{});
          break;
        case SQLITE_INTEGER:
          row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(statement, i)));
          break;
        case SQLITE_FLOAT:
          row.emplace_back(sqlite3_column_double(statement, i));
          break;
        default: {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, i));
          row.emplace_back(std::string(text ? text : "",
                                       static_cast<size_t>(sqlite3_column_bytes(statement, i))));
        }
      }
    }
  }
  if (rc != SQLITE_DONE) return sql_error(db_);
  return result;
}

Result<std::vector<QueryResult>> QueryEngine::run(std::string_view sql) {
  return execute(sql, true);
}

Result<std::vector<QueryResult>> QueryEngine::execute(std::string_view sql, bool user_statements) {
  std::vector<QueryResult> results;
  std::string rest(sql);
  const char* tail = rest.c_str();
  while (*tail) {
    sqlite3_stmt* statement = nullptr;
    const char* next = nullptr;
    if (sqlite3_prepare_v2(db_, tail, -1, &statement, &next) != SQLITE_OK) return sql_error(db_);
    tail = next;
    if (!statement) continue;  // whitespace or a comment
    if (user_statements) source_->new_statement();
    Result<QueryResult> r = step_all(statement);
    const bool returns_rows = sqlite3_column_count(statement) > 0;
    sqlite3_finalize(statement);
    if (!r) return r.error();
    if (returns_rows) results.push_back(std::move(r).value());
  }
  return results;
}

Result<std::vector<std::pair<std::string, std::string>>> QueryEngine::tables() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const SqlTable& t : feature_sql_tables()) {
    std::string columns;
    for (const SqlColumn& c : t.columns)
      if (c.type.find("HIDDEN") == std::string::npos)
        columns += fmt::format("{}{} {}", columns.empty() ? "" : ", ", c.name, c.type);
    out.emplace_back(t.name, columns);
  }
  for (const OsqueryTable& t : osquery_tables()) {
    NFM_ASSIGN(std::vector<QueryResult> r,
               execute(fmt::format("SELECT name FROM pragma_table_info('{}')", t.name), false));
    std::string columns;
    for (const auto& row : r.at(0).rows)
      columns += fmt::format("{}{}", columns.empty() ? "" : ", ", std::get<std::string>(row.at(0)));
    out.emplace_back(std::string(t.name), columns);
  }
  return out;
}

}  // namespace nfm::query
