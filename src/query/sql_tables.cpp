#include "query/sql_tables.h"

#include <fmt/core.h>

#include <exception>
#include <memory>
#include <optional>

namespace nfm::query {

namespace {

using schema::json;

// Columns every table starts with: which VM, on which host, crawled when, and the
// hidden `snapshot` (which VM at which time) that the views join sections on.
constexpr int kVmColumn = 0;
constexpr int kSnapshotColumn = 3;
constexpr int kFirstOwnColumn = 4;

std::string sql_type(schema::Type type) {
  switch (type) {
    case schema::Type::int64:
    case schema::Type::uint64:
    case schema::Type::boolean:
      return "INTEGER";
    case schema::Type::real:
      return "REAL";
    case schema::Type::text:
    case schema::Type::text_list:
      return "TEXT";
  }
  return "TEXT";
}

std::vector<SqlColumn> common_columns() {
  return {{"vm", "TEXT", "the VM's name, as the host names it (QEMU -name, libvirt domain)"},
          {"host", "TEXT", "the host the VM runs on"},
          {"time", "INTEGER", "when the crawl that read the row began (ns since the epoch)"},
          {"snapshot", "INTEGER HIDDEN",
           "which VM at which time (hidden): rows of one frame share it, for joins"}};
}

// The `frames` table's own columns, after the common ones.
enum FramesColumn {
  kStatement = kFirstOwnColumn,
  kFeature,
  kPid,
  kOk,
  kPartial,
  kWalk,
  kRows,
  kDurationNs,
  kError,
  kErrors,
  kSkipped,
};

SqlTable frames_table() {
  SqlTable t{.name = "frames",
             .doc = "one row per feature section a statement crawled (live) or loaded (store)",
             .columns = common_columns()};
  t.columns.insert(
      t.columns.end(),
      {{"statement", "INTEGER", "which statement of this session read it (1 = the first)"},
       {"feature", "TEXT", "the feature (the table nfm_FEATURE)"},
       {"pid", "INTEGER", "the crawl was narrowed to this process (pid = constraint); else NULL"},
       {"ok", "INTEGER", "1 when the section was read (maybe partially)"},
       {"partial", "INTEGER", "1 when rows may be missing (a torn walk, read errors)"},
       {"walk", "TEXT", "how the feature's main list walk ended (complete, torn, limit, ...)"},
       {"rows", "INTEGER", "rows in the section"},
       {"duration_ns", "INTEGER", "host time the crawl of this feature took"},
       {"error", "TEXT", "why the section could not be read, when ok = 0"},
       {"errors", "TEXT", "items lost to bad reads, by kind (a JSON object)"},
       {"skipped", "TEXT", "items absent for normal reasons, by kind (a JSON object)"}});
  return t;
}

struct Table {
  const SqlTable* spec;
  std::optional<Feature> feature;  // none: the frames table
  std::vector<schema::Column> columns;
  int pid_column = -1;  // index in spec->columns, or -1
};

// A module's client data: its table, and the snapshots it reads.
struct ModuleData {
  std::unique_ptr<Table> table;
  SnapshotSource* source;
};

struct VTab : sqlite3_vtab {
  const Table* table;
  SnapshotSource* source;
};

struct Cursor : sqlite3_vtab_cursor {
  std::vector<size_t> snapshots;
  size_t snapshot_pos = 0;
  const SectionRows* section = nullptr;
  size_t row = 0;
  std::optional<int64_t> pid;
  std::vector<SectionRecord> records;  // the frames table
  size_t record = 0;
  int64_t rowid = 0;

  void reset() {
    snapshots.clear();
    snapshot_pos = 0;
    section = nullptr;
    row = 0;
    pid.reset();
    records.clear();
    record = 0;
    rowid = 0;
  }
};

VTab* vtab_of(sqlite3_vtab_cursor* c) {
  return static_cast<VTab*>(c->pVtab);
}

int fail(sqlite3_vtab* vtab, const std::string& message) {
  sqlite3_free(vtab->zErrMsg);
  vtab->zErrMsg = sqlite3_mprintf("%s", message.c_str());
  return SQLITE_ERROR;
}

// No C++ exception may unwind through SQLite.
template <typename F>
int guarded(sqlite3_vtab* vtab, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return fail(vtab, e.what());
  }
}

std::string declaration(const SqlTable& t) {
  std::string sql = "CREATE TABLE x(";
  for (size_t i = 0; i < t.columns.size(); ++i)
    sql += fmt::format("{}\"{}\" {}", i ? ", " : "", t.columns[i].name, t.columns[i].type);
  return sql + ")";
}

int x_connect(sqlite3* db, void* aux, int, const char* const*, sqlite3_vtab** out, char** err) {
  const auto* data = static_cast<const ModuleData*>(aux);
  const Table* table = data->table.get();
  const int rc = sqlite3_declare_vtab(db, declaration(*table->spec).c_str());
  if (rc != SQLITE_OK) {
    *err = sqlite3_mprintf("%s: %s", table->spec->name.c_str(), sqlite3_errmsg(db));
    return rc;
  }
  auto* vtab = new VTab{};
  vtab->table = table;
  vtab->source = data->source;
  *out = vtab;
  return SQLITE_OK;
}

int x_disconnect(sqlite3_vtab* vtab) {
  delete static_cast<VTab*>(vtab);
  return SQLITE_OK;
}

// idxNum bits: which equality constraints xFilter receives, in argv order.
constexpr int kByVm = 1, kBySnapshot = 2, kByPid = 4;

int x_best_index(sqlite3_vtab* vtab, sqlite3_index_info* info) {
  const Table& table = *static_cast<VTab*>(vtab)->table;
  int by_vm = -1, by_snapshot = -1, by_pid = -1;
  for (int i = 0; i < info->nConstraint; ++i) {
    const auto& c = info->aConstraint[i];
    if (!c.usable || c.op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (c.iColumn == kVmColumn) by_vm = i;
    if (c.iColumn == kSnapshotColumn) by_snapshot = i;
    if (c.iColumn == table.pid_column && table.pid_column >= 0) by_pid = i;
  }
  int argv = 1;
  double cost = 1e6;
  info->idxNum = 0;
  if (by_vm >= 0) {
    info->aConstraintUsage[by_vm].argvIndex = argv++;
    info->aConstraintUsage[by_vm].omit = 1;  // xFilter compares exactly as = does (BINARY)
    info->idxNum |= kByVm;
    cost /= 100;
  }
  if (by_snapshot >= 0) {
    info->aConstraintUsage[by_snapshot].argvIndex = argv++;
    info->aConstraintUsage[by_snapshot].omit = 1;
    info->idxNum |= kBySnapshot;
    cost /= 200;
  }
  if (by_pid >= 0) {
    // A hint: rows of other pids may come back (a feature that cannot narrow), SQLite checks.
    info->aConstraintUsage[by_pid].argvIndex = argv++;
    info->idxNum |= kByPid;
    cost /= 10;
  }
  info->estimatedCost = cost;
  info->estimatedRows = static_cast<sqlite3_int64>(cost / 10);
  return SQLITE_OK;
}

int x_open(sqlite3_vtab*, sqlite3_vtab_cursor** out) {
  *out = new Cursor{};
  return SQLITE_OK;
}

int x_close(sqlite3_vtab_cursor* c) {
  delete static_cast<Cursor*>(c);
  return SQLITE_OK;
}

std::optional<int64_t> row_pid(const json& row) {
  auto it = row.find("pid");
  if (it == row.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

// Moves to the first row at or after the cursor's position that passes the pid filter.
void settle(Cursor& c, VTab& vtab) {
  const Table& table = *vtab.table;
  if (!table.feature) return;
  while (c.snapshot_pos < c.snapshots.size()) {
    if (!c.section) {
      c.section = vtab.source->section(c.snapshots[c.snapshot_pos], *table.feature, c.pid);
      c.row = 0;
    }
    if (c.section) {
      for (; c.row < c.section->rows.size(); ++c.row)
        if (!c.pid || row_pid(c.section->rows[c.row]) == c.pid) return;
    }
    c.section = nullptr;
    ++c.snapshot_pos;
  }
}

int x_filter(sqlite3_vtab_cursor* cursor, int idx_num, const char*, int argc,
             sqlite3_value** argv) {
  auto& c = *static_cast<Cursor*>(cursor);
  VTab& vtab = *vtab_of(cursor);
  return guarded(&vtab, [&] {
    c.reset();  // not `c = Cursor{}`: SQLite owns the base's pVtab
    int arg = 0;
    std::optional<std::string> vm;
    if ((idx_num & kByVm) && arg < argc) {
      const unsigned char* text = sqlite3_value_text(argv[arg++]);
      vm = text ? reinterpret_cast<const char*>(text) : "";
    }
    std::optional<int64_t> snapshot;
    if ((idx_num & kBySnapshot) && arg < argc) {
      sqlite3_value* v = argv[arg++];
      // Not an integer: no snapshot has it.
      snapshot = sqlite3_value_type(v) == SQLITE_INTEGER ? sqlite3_value_int64(v) : -1;
    }
    if ((idx_num & kByPid) && arg < argc) {
      sqlite3_value* v = argv[arg++];
      if (sqlite3_value_type(v) == SQLITE_INTEGER) c.pid = sqlite3_value_int64(v);
    }
    if (!vtab.table->feature) {
      for (const SectionRecord& r : vtab.source->records())
        if (!vm || r.vm == *vm) c.records.push_back(r);
      return SQLITE_OK;
    }
    const std::vector<VmIdentity>& snapshots = vtab.source->snapshots();
    for (size_t i = 0; i < snapshots.size(); ++i)
      if ((!vm || snapshots[i].name == *vm) && (!snapshot || *snapshot == static_cast<int64_t>(i)))
        c.snapshots.push_back(i);
    settle(c, vtab);
    return SQLITE_OK;
  });
}

int x_next(sqlite3_vtab_cursor* cursor) {
  auto& c = *static_cast<Cursor*>(cursor);
  VTab& vtab = *vtab_of(cursor);
  ++c.rowid;
  if (!vtab.table->feature) {
    ++c.record;
    return SQLITE_OK;
  }
  return guarded(&vtab, [&] {
    ++c.row;
    settle(c, vtab);
    return SQLITE_OK;
  });
}

int x_eof(sqlite3_vtab_cursor* cursor) {
  auto& c = *static_cast<Cursor*>(cursor);
  if (!vtab_of(cursor)->table->feature) return c.record >= c.records.size();
  return c.snapshot_pos >= c.snapshots.size();
}

void result_text(sqlite3_context* ctx, const std::string& text) {
  sqlite3_result_text(ctx, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

void result_uint(sqlite3_context* ctx, uint64_t v) {
  // As the SQLite store keeps them: the bits of the value (a few counters could exceed 2^63).
  sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(v));
}

void result_json(sqlite3_context* ctx, const json& v) {
  switch (v.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      sqlite3_result_null(ctx);
      return;
    case json::value_t::boolean:
      sqlite3_result_int(ctx, v.get<bool>() ? 1 : 0);
      return;
    case json::value_t::number_unsigned:
      result_uint(ctx, v.get<uint64_t>());
      return;
    case json::value_t::number_integer:
      sqlite3_result_int64(ctx, v.get<int64_t>());
      return;
    case json::value_t::number_float:
      sqlite3_result_double(ctx, v.get<double>());
      return;
    case json::value_t::string:
      result_text(ctx, v.get_ref<const std::string&>());
      return;
    default:
      // text_list columns (and anything structured) as JSON text, for json_each().
      result_text(ctx, v.dump());
  }
}

std::string counts_json(const std::map<std::string, uint64_t>& counts) {
  return json(counts).dump();
}

void frames_column(sqlite3_context* ctx, const SectionRecord& r, int column) {
  switch (column) {
    case 0:
      return result_text(ctx, r.vm);
    case 1:
      return result_text(ctx, r.host);
    case 2:
      return result_uint(ctx, r.time_ns);
    case kSnapshotColumn:
      return sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(r.snapshot));
    case kStatement:
      return result_uint(ctx, r.statement);
    case kFeature:
      return result_text(ctx, r.feature);
    case kPid:
      if (r.pid) return sqlite3_result_int64(ctx, *r.pid);
      return sqlite3_result_null(ctx);
    case kOk:
      return sqlite3_result_int(ctx, r.status.ok ? 1 : 0);
    case kPartial:
      return sqlite3_result_int(ctx, r.status.partial() ? 1 : 0);
    case kWalk:
      return result_text(ctx, r.status.walk);
    case kRows:
      return result_uint(ctx, r.status.rows);
    case kDurationNs:
      return result_uint(ctx, r.status.duration_ns);
    case kError:
      if (r.status.error.empty()) return sqlite3_result_null(ctx);
      return result_text(ctx, r.status.error);
    case kErrors:
      return result_text(ctx, counts_json(r.status.errors));
    case kSkipped:
      return result_text(ctx, counts_json(r.status.skipped));
    default:
      sqlite3_result_null(ctx);
  }
}

int x_column(sqlite3_vtab_cursor* cursor, sqlite3_context* ctx, int column) {
  auto& c = *static_cast<Cursor*>(cursor);
  VTab& vtab = *vtab_of(cursor);
  return guarded(&vtab, [&] {
    const Table& table = *vtab.table;
    if (!table.feature) {
      frames_column(ctx, c.records.at(c.record), column);
      return SQLITE_OK;
    }
    const VmIdentity& vm = vtab.source->snapshots().at(c.snapshots.at(c.snapshot_pos));
    if (column == 0)
      result_text(ctx, vm.name);
    else if (column == 1)
      result_text(ctx, vm.host);
    else if (column == 2)
      result_uint(ctx, c.section->time_ns);
    else if (column == kSnapshotColumn)
      sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(c.snapshots.at(c.snapshot_pos)));
    else {
      const schema::Column& col = table.columns.at(static_cast<size_t>(column - kFirstOwnColumn));
      const json& row = c.section->rows.at(c.row);
      auto it = row.find(col.name);
      result_json(ctx, it == row.end() ? col.fallback : *it);
    }
    return SQLITE_OK;
  });
}

int x_rowid(sqlite3_vtab_cursor* cursor, sqlite3_int64* rowid) {
  *rowid = static_cast<Cursor*>(cursor)->rowid;
  return SQLITE_OK;
}

const sqlite3_module kModule = {
    .iVersion = 0,
    .xCreate = nullptr,  // eponymous only: the table exists without CREATE VIRTUAL TABLE
    .xConnect = x_connect,
    .xBestIndex = x_best_index,
    .xDisconnect = x_disconnect,
    .xDestroy = x_disconnect,
    .xOpen = x_open,
    .xClose = x_close,
    .xFilter = x_filter,
    .xNext = x_next,
    .xEof = x_eof,
    .xColumn = x_column,
    .xRowid = x_rowid,
};

struct SpecSet {
  std::vector<SqlTable> tables;
  std::vector<std::optional<Feature>> features;
};

const SpecSet& specs() {
  static const SpecSet set = [] {
    SpecSet s;
    for (Feature f : all_features()) {
      SqlTable t{.name = "nfm_" + std::string(f.name()),
                 .doc = std::string(f.info().doc),
                 .columns = common_columns()};
      for (const schema::Column& c : f.info().columns)
        t.columns.push_back({std::string(c.name), sql_type(c.type), std::string(c.doc)});
      s.tables.push_back(std::move(t));
      s.features.emplace_back(f);
    }
    s.tables.push_back(frames_table());
    s.features.emplace_back(std::nullopt);
    return s;
  }();
  return set;
}

}  // namespace

const std::vector<SqlTable>& feature_sql_tables() {
  return specs().tables;
}

Result<void> register_feature_tables(sqlite3* db, SnapshotSource& source) {
  const SpecSet& set = specs();
  for (size_t i = 0; i < set.tables.size(); ++i) {
    auto table = std::make_unique<Table>();
    table->spec = &set.tables[i];
    table->feature = set.features[i];
    if (table->feature) {
      table->columns = table->feature->info().columns;
      for (size_t k = 0; k < table->columns.size(); ++k) {
        const std::string_view name = table->columns[k].name;
        if (name == "vm" || name == "host" || name == "time")
          return make_error(Errc::invalid_argument,
                            fmt::format("{}: its column '{}' clashes with the common column",
                                        table->spec->name, name));
        if (name == "pid") table->pid_column = static_cast<int>(k) + kFirstOwnColumn;
      }
    }
    auto* data = new ModuleData{std::move(table), &source};
    const int rc = sqlite3_create_module_v2(db, set.tables[i].name.c_str(), &kModule, data,
                                            [](void* p) { delete static_cast<ModuleData*>(p); });
    if (rc != SQLITE_OK)
      return make_error(
          Errc::io, fmt::format("cannot register {}: {}", set.tables[i].name, sqlite3_errmsg(db)));
  }
  return {};
}

}  // namespace nfm::query
