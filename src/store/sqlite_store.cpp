#include "store/sqlite_store.h"

#include <fmt/core.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>
#include <unordered_map>

#include "frame/frame_json.h"
#include "store/queued_sink.h"
#include "store/store_schema.h"

namespace nfm {

using json = nlohmann::json;
using store::ColumnType;
using store::FeatureTable;

namespace {

std::string quoted(const std::string& name) {
  return "\"" + name + "\"";
}

const char* sql_type(ColumnType type) {
  switch (type) {
    case ColumnType::int64:
    case ColumnType::uint64:
    case ColumnType::boolean:
      return "INTEGER";
    case ColumnType::real:
      return "REAL";
    case ColumnType::text:
    case ColumnType::text_list:
      return "TEXT";
  }
  return "";
}

int64_t clamp_i64(uint64_t v) {
  return v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
             ? std::numeric_limits<int64_t>::max()
             : static_cast<int64_t>(v);
}

// One database connection with prepared statements, used by one thread at a time.
class Db {
 public:
  ~Db() {
    for (auto& [_, s] : statements_) sqlite3_finalize(s);
    if (db_) sqlite3_close(db_);
  }

  Result<void> open(const std::string& path, int flags) {
    path_ = path;
    if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK)
      return error("cannot open");
    sqlite3_busy_timeout(db_, 5000);
    return {};
  }

  Error error(const std::string& what) const {
    return make_error(Errc::io, fmt::format("sqlite:{}: {}: {}", path_, what,
                                            db_ ? sqlite3_errmsg(db_) : "out of memory"));
  }

  Result<void> exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      Error e = make_error(Errc::io, fmt::format("sqlite:{}: {}: {}", path_,
                                                 message ? message : "?", sql.substr(0, 80)));
      sqlite3_free(message);
      return e;
    }
    return {};
  }

  // A cached prepared statement, reset and unbound.
  Result<sqlite3_stmt*> prepare(const std::string& sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
      return error("cannot prepare " + sql.substr(0, 60));
    statements_[sql] = s;
    return s;
  }

  sqlite3* handle() { return db_; }
  const std::string& path() const { return path_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  std::map<std::string, sqlite3_stmt*> statements_;
};

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, sqlite3_column_bytes(s, i)) : std::string();
}

// ---------------------------------------------------------------------------
// The sink.

// What a frame store holds (PRAGMA user_version): 2 = row versions (below); 1 = every
// frame's rows in full beside its whole JSON (read, never written).
constexpr int kSchemaVersion = 2;

// Row versions. Consecutive frames of a VM are mostly the same, so a feature table
// holds a row once per version: written when it appears or one of its values changes,
// closed (until_frame_id, until_ns) when the VM's next frame no longer has it. A frame
// keeps its rows' order as runs of row ids (frames.sections), so it is rebuilt
// exactly; "the state at frame F" is the rows with frame_id <= F < until_frame_id.
class SqliteSink final : public QueuedSink {
 public:
  SqliteSink(std::string path, const SinkOptions& options)
      : QueuedSink({.limit = std::max<uint64_t>(options.buffer_frames, 1)}),
        path_(std::move(path)),
        options_(options) {}

  ~SqliteSink() override { stop_writer(); }

  Result<void> start() {
    NFM_ASSIGN(moved_aside_, set_aside_an_older_store());
    NFM_TRY(db_.open(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    NFM_TRY(db_.exec("PRAGMA journal_mode=WAL"));
    NFM_TRY(db_.exec("PRAGMA synchronous=NORMAL"));
    // The WAL is checkpointed every 1,000 pages (SQLite's default) and cut back to
    // 64 MiB after: it does not keep the size of the largest burst.
    NFM_TRY(db_.exec("PRAGMA journal_size_limit=67108864"));
    // The writer looks up the pages it last wrote (indexes, open versions) in every
    // batch: a 32 MiB page cache and reads through a mapping instead of pread() into
    // SQLite's default 2 MiB (perf of bench_fleet: reads were a quarter of the sink).
    NFM_TRY(db_.exec("PRAGMA cache_size=-32768"));
    NFM_TRY(db_.exec("PRAGMA mmap_size=268435456"));
    NFM_TRY(create_tables());
    NFM_TRY(close_open_versions());
    start_writer();
    return {};
  }

  std::string describe() const override { return "sqlite:" + path_; }

 private:
  // A store of schema 1 cannot take row versions: it is renamed PATH.v1 (still
  // readable with --store sqlite:PATH.v1) and a new one begins. Returns the new name.
  Result<std::string> set_aside_an_older_store() {
    if (!std::filesystem::exists(path_)) return std::string();
    int version = 0;
    {
      Db old;
      NFM_TRY(old.open(path_, SQLITE_OPEN_READWRITE));
      NFM_ASSIGN(sqlite3_stmt * s, old.prepare("PRAGMA user_version"));
      if (sqlite3_step(s) == SQLITE_ROW) version = sqlite3_column_int(s, 0);
      sqlite3_reset(s);  // a statement in progress would hold the checkpoint off
      if (version == 0 || version >= kSchemaVersion) return std::string();
      NFM_TRY(old.exec("PRAGMA wal_checkpoint(TRUNCATE)"));
    }
    const std::string aside = path_ + ".v" + std::to_string(version);
    if (std::filesystem::exists(aside))
      return make_error(Errc::io, fmt::format("sqlite:{}: written by an older nfm (schema {}), "
                                              "and {} exists: move one away",
                                              path_, version, aside));
    std::error_code ec;
    std::filesystem::rename(path_, aside, ec);
    if (ec)
      return make_error(Errc::io, fmt::format("sqlite:{}: cannot set the older store aside as "
                                              "{}: {}",
                                              path_, aside, ec.message()));
    for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(path_ + suffix, ec);
    return aside;
  }

  Result<void> create_tables() {
    NFM_TRY(
        db_.exec("CREATE TABLE IF NOT EXISTS frames (\n"
                 "  id INTEGER PRIMARY KEY,\n"
                 "  vm TEXT NOT NULL,\n"
                 "  vm_uuid TEXT NOT NULL,\n"
                 "  vm_pid INTEGER NOT NULL,\n"
                 "  host TEXT NOT NULL,\n"
                 "  host_time_ns INTEGER NOT NULL,\n"
                 "  duration_ns INTEGER NOT NULL,\n"
                 "  kernel_release TEXT NOT NULL,\n"
                 "  target TEXT NOT NULL,\n"
                 "  partial INTEGER NOT NULL,\n"
                 "  frame TEXT NOT NULL,\n"
                 "  sections TEXT NOT NULL\n"
                 ");\n"
                 "CREATE INDEX IF NOT EXISTS frames_vm_time ON frames(vm, host_time_ns);\n"
                 "CREATE INDEX IF NOT EXISTS frames_time ON frames(host_time_ns);"));
    for (const FeatureTable& t : store::feature_tables()) {
      std::string sql = "CREATE TABLE IF NOT EXISTS " + t.name +
                        " (\n  row_id INTEGER PRIMARY KEY,\n  vm TEXT NOT NULL,\n"
                        "  frame_id INTEGER NOT NULL,\n  host_time_ns INTEGER NOT NULL,\n"
                        "  until_frame_id INTEGER,\n  until_ns INTEGER";
      for (const store::Column& c : t.columns)
        sql += fmt::format(",\n  {} {}", quoted(c.name), sql_type(c.type));
      sql += "\n);\n";
      sql +=
          fmt::format("CREATE INDEX IF NOT EXISTS {0}_vm_time ON {0}(vm, host_time_ns);\n", t.name);
      sql += fmt::format("CREATE INDEX IF NOT EXISTS {0}_until ON {0}(until_frame_id);", t.name);
      NFM_TRY(db_.exec(sql));
      NFM_TRY(add_missing_columns(t));
    }
    return db_.exec(fmt::format("PRAGMA user_version={}", kSchemaVersion));
  }

  // A store written by an older nfm of this schema lacks the columns features
  // declared since: they are added (NULL in the old rows), so the store keeps taking
  // frames.
  Result<void> add_missing_columns(const FeatureTable& t) {
    NFM_ASSIGN(sqlite3_stmt * s, db_.prepare("SELECT name FROM pragma_table_info(?)"));
    sqlite3_bind_text(s, 1, t.name.data(), static_cast<int>(t.name.size()), SQLITE_TRANSIENT);
    std::set<std::string> have;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) have.insert(column_text(s, 0));
    if (rc != SQLITE_DONE) return db_.error("cannot read the columns of " + t.name);
    for (const store::Column& c : t.columns)
      if (!have.contains(c.name))
        NFM_TRY(db_.exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", t.name, quoted(c.name),
                                     sql_type(c.type))));
    return {};
  }

  // The writer remembers nothing of an earlier run: the versions it left open end
  // just after their VM's last frame (the next frame writes what it sees anew).
  Result<void> close_open_versions() {
    NFM_TRY(db_.exec("BEGIN IMMEDIATE"));
    Result<void> r = [&]() -> Result<void> {
      for (const FeatureTable& t : store::feature_tables())
        NFM_TRY(db_.exec(fmt::format(
            "UPDATE {0} SET until_frame_id = (SELECT max(id) + 1 FROM frames), until_ns = "
            "(SELECT max(host_time_ns) + 1 FROM frames f WHERE f.vm = {0}.vm) "
            "WHERE until_frame_id IS NULL",
            t.name)));
      return {};
    }();
    if (!r) {
      (void)db_.exec("ROLLBACK");
      return r;
    }
    return db_.exec("COMMIT");
  }

  // One transaction per batch; a batch that fails is rolled back and dropped (and
  // what the writer remembered of the VMs in it is forgotten: their next frames are
  // written whole).
  Result<void> deliver(const QueuedSink::Batch& frames) override {
    NFM_TRY(db_.exec("BEGIN IMMEDIATE"));
    Result<void> r = [&]() -> Result<void> {
      for (const auto& f : frames) NFM_TRY(insert(*f));
      return retain();
    }();
    if (r) r = db_.exec("COMMIT");
    if (!r) {
      (void)db_.exec("ROLLBACK");
      // What the writer remembered may name rows the rollback took back: it starts
      // over as after a restart.
      live_.clear();
      (void)close_open_versions();
      return r;
    }
    return {};
  }

  // The VM is gone: its versions end after its last frame.
  void forget(const std::string& vm) override {
    auto it = live_.find(vm);
    if (it == live_.end()) return;
    const VmRows rows = std::move(it->second);
    live_.erase(it);
    if (!db_.exec("BEGIN IMMEDIATE")) return;
    bool ok = true;
    for (const auto& [table, section] : rows.sections)
      for (const auto& [bytes, row_id] : section)
        ok = ok && close_version(*table, row_id, rows.last_frame_id + 1, rows.last_ns + 1);
    (void)db_.exec(ok ? "COMMIT" : "ROLLBACK");
  }

  Result<void> bind(sqlite3_stmt* s, int i, const store::Column& c, const json& v) {
    int rc = SQLITE_OK;
    if (v.is_null()) {
      rc = sqlite3_bind_null(s, i);
    } else if (c.type == ColumnType::text_list) {
      const std::string text = dump_json(v, -1);
      rc = sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    } else if (v.is_string()) {
      const auto& text = v.get_ref<const std::string&>();
      rc = sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    } else if (v.is_boolean()) {
      rc = sqlite3_bind_int(s, i, v.get<bool>() ? 1 : 0);
    } else if (v.is_number_unsigned()) {
      rc = sqlite3_bind_int64(s, i, static_cast<int64_t>(v.get<uint64_t>()));
    } else if (v.is_number_integer()) {
      rc = sqlite3_bind_int64(s, i, v.get<int64_t>());
    } else if (v.is_number()) {
      rc = sqlite3_bind_double(s, i, v.get<double>());
    } else {
      const std::string text = dump_json(v, -1);
      rc = sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    }
    if (rc != SQLITE_OK) return db_.error("cannot bind " + c.name);
    return {};
  }

  Result<void> step_done(sqlite3_stmt* s, const char* what) {
    if (sqlite3_step(s) != SQLITE_DONE) return db_.error(what);
    return {};
  }

  // A frame without its JSON: the sections' rows come typed from the features'
  // declarations (FeatureInfo::each_row), only the meta is JSON.
  Result<void> insert(const Frame& frame) {
    const FrameMeta& m = frame.meta;
    const std::string& vm = m.vm.name;
    bool partial = false;
    for (const auto& [_, status] : m.features) partial |= status.partial();
    NFM_ASSIGN(sqlite3_stmt * s,
               db_.prepare("INSERT INTO frames (vm, vm_uuid, vm_pid, host, host_time_ns, "
                           "duration_ns, kernel_release, target, partial, frame, sections) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,'{}')"));
    const std::string text = dump_json(frame_meta_json(frame), -1);
    sqlite3_bind_text(s, 1, vm.data(), static_cast<int>(vm.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, m.vm.uuid.data(), static_cast<int>(m.vm.uuid.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, m.vm.pid);
    sqlite3_bind_text(s, 4, m.vm.host.data(), static_cast<int>(m.vm.host.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, clamp_i64(m.host_time_ns));
    sqlite3_bind_int64(s, 6, clamp_i64(m.duration_ns));
    sqlite3_bind_text(s, 7, m.kernel.release.data(), static_cast<int>(m.kernel.release.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 8, m.target.data(), static_cast<int>(m.target.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 9, partial ? 1 : 0);
    sqlite3_bind_text(s, 10, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    NFM_TRY(step_done(s, "cannot insert a frame"));
    const int64_t id = sqlite3_last_insert_rowid(db_.handle());
    newest_ns_ = std::max(newest_ns_, m.host_time_ns);

    VmRows& live = live_[vm];
    json runs = json::object();
    for (const FeatureTable& t : store::feature_tables()) {
      auto section = frame.sections.find(t.name);
      if (section == frame.sections.end()) continue;
      NFM_ASSIGN(runs[t.name],
                 write_section(t, section->second, live.sections[&t], vm, id, m.host_time_ns));
    }
    live.last_frame_id = id;
    live.last_ns = m.host_time_ns;
    NFM_ASSIGN(sqlite3_stmt * u, db_.prepare("UPDATE frames SET sections = ? WHERE id = ?"));
    const std::string runs_text = dump_json(runs, -1);
    sqlite3_bind_text(u, 1, runs_text.data(), static_cast<int>(runs_text.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(u, 2, id);
    return step_done(u, "cannot insert a frame");
  }

  // The row versions of one section of frame `id` (store::match_versions): new rows
  // inserted, missing ones closed. Returns the frame's rows as runs of row ids.
  Result<json> write_section(const FeatureTable& t, const std::any& section, store::LiveRows& live,
                             const std::string& vm, int64_t id, uint64_t time_ns) {
    return store::match_versions(t, section, live,
                                 {.add =
                                      [&](const std::vector<json>& values) {
                                        return insert_version(t, values, vm, id, time_ns);
                                      },
                                  .end = [&](int64_t row_id) -> Result<void> {
                                    if (!close_version(t, row_id, id, time_ns))
                                      return db_.error("cannot close a row version");
                                    return {};
                                  }});
  }

  // A table's version statements, spelled once per table rather than for every row
  // (the prepared statements are looked up by their text).
  struct TableStatements {
    std::string insert, close;
  };
  const TableStatements& statements(const FeatureTable& t) {
    auto [it, fresh] = statements_.try_emplace(&t);
    if (fresh) {
      std::string columns = "vm, frame_id, host_time_ns", marks = "?,?,?";
      for (const store::Column& c : t.columns) {
        columns += "," + quoted(c.name);
        marks += ",?";
      }
      it->second.insert = fmt::format("INSERT INTO {} ({}) VALUES ({})", t.name, columns, marks);
      it->second.close =
          fmt::format("UPDATE {} SET until_frame_id = ?, until_ns = ? WHERE row_id = ?", t.name);
    }
    return it->second;
  }

  Result<int64_t> insert_version(const FeatureTable& t, const std::vector<json>& values,
                                 const std::string& vm, int64_t id, uint64_t time_ns) {
    NFM_ASSIGN(sqlite3_stmt * s, db_.prepare(statements(t).insert));
    sqlite3_bind_text(s, 1, vm.data(), static_cast<int>(vm.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, id);
    sqlite3_bind_int64(s, 3, clamp_i64(time_ns));
    for (size_t i = 0; i < t.columns.size(); ++i) {
      const store::Column& c = t.columns[i];
      const json& v = i < values.size() && !values[i].is_discarded() ? values[i] : c.fallback;
      NFM_TRY(bind(s, static_cast<int>(i) + 4, c, v));
    }
    NFM_TRY(step_done(s, ("cannot insert into " + t.name).c_str()));
    return sqlite3_last_insert_rowid(db_.handle());
  }

  bool close_version(const FeatureTable& t, int64_t row_id, int64_t until_id, uint64_t until_ns) {
    auto s = db_.prepare(statements(t).close);
    if (!s) return false;
    sqlite3_bind_int64(*s, 1, until_id);
    sqlite3_bind_int64(*s, 2, clamp_i64(until_ns));
    sqlite3_bind_int64(*s, 3, row_id);
    return sqlite3_step(*s) == SQLITE_DONE;
  }

  // Retention and the size budget delete the oldest frames in chunks of at most 512
  // frames per batch (a store far over its budget, after a lowered --max-store-size,
  // shrinks over the next batches without stalling the writer), and with them the
  // row versions no remaining frame shows.
  Result<void> retain() {
    constexpr int64_t kChunk = 512;
    if (options_.retain_ns && newest_ns_ > options_.retain_ns) {
      const int64_t cutoff = clamp_i64(newest_ns_ - options_.retain_ns);
      NFM_ASSIGN(sqlite3_stmt * s,
                 db_.prepare("SELECT max(id) FROM (SELECT id FROM frames WHERE host_time_ns < ? "
                             "ORDER BY id LIMIT ?)"));
      sqlite3_bind_int64(s, 1, cutoff);
      sqlite3_bind_int64(s, 2, kChunk);
      if (sqlite3_step(s) != SQLITE_ROW) return db_.error("cannot find old frames");
      if (sqlite3_column_type(s, 0) != SQLITE_NULL) {
        const int64_t last = sqlite3_column_int64(s, 0);
        return delete_frames_through(last);
      }
    }
    if (!options_.max_store_bytes) return {};
    NFM_ASSIGN(const uint64_t used, used_bytes());
    if (used <= options_.max_store_bytes) return {};
    // Down to 95% of the budget, so that the next batches need not delete again:
    // as many frames as the excess holds at the store's average frame size.
    NFM_ASSIGN(sqlite3_stmt * s, db_.prepare("SELECT min(id), max(id) FROM frames"));
    if (sqlite3_step(s) != SQLITE_ROW) return db_.error("cannot count frames");
    const int64_t first = sqlite3_column_int64(s, 0);
    const auto frames =
        static_cast<double>(std::max<int64_t>(sqlite3_column_int64(s, 1) - first + 1, 1));
    const double excess =
        static_cast<double>(used) - 0.95 * static_cast<double>(options_.max_store_bytes);
    const auto chunk = static_cast<int64_t>(
        std::clamp(std::ceil(excess * frames / static_cast<double>(used)), 1.0, double{kChunk}));
    return delete_frames_through(first + chunk - 1);
  }

  // Bytes in the database's pages that hold data (deleted pages are reused, not given
  // back: the file stays near the budget instead of shrinking and growing).
  Result<uint64_t> used_bytes() {
    uint64_t v[3] = {};
    const char* pragmas[3] = {"PRAGMA page_count", "PRAGMA freelist_count", "PRAGMA page_size"};
    for (int i = 0; i < 3; ++i) {
      NFM_ASSIGN(sqlite3_stmt * s, db_.prepare(pragmas[i]));
      if (sqlite3_step(s) != SQLITE_ROW) return db_.error(std::string("cannot read ") + pragmas[i]);
      v[i] = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    }
    return (v[0] - std::min(v[0], v[1])) * v[2];
  }

  // Deletes the frames up to id `last` and the row versions that ended by the next
  // frame (no remaining frame shows them).
  Result<void> delete_frames_through(int64_t last) {
    for (const FeatureTable& t : store::feature_tables()) {
      NFM_ASSIGN(sqlite3_stmt * s,
                 db_.prepare("DELETE FROM " + t.name + " WHERE until_frame_id <= ?"));
      sqlite3_bind_int64(s, 1, last + 1);
      NFM_TRY(step_done(s, "cannot delete old rows"));
    }
    NFM_ASSIGN(sqlite3_stmt * s, db_.prepare("DELETE FROM frames WHERE id <= ?"));
    sqlite3_bind_int64(s, 1, last);
    NFM_TRY(step_done(s, "cannot delete old frames"));
    if (const int gone = sqlite3_changes(db_.handle()); gone > 0)
      count_expired(static_cast<uint64_t>(gone));
    return {};
  }

  // What the writer keeps of a VM: the row versions its newest frame showed.
  struct VmRows {
    std::unordered_map<const FeatureTable*, store::LiveRows> sections;
    int64_t last_frame_id = 0;
    uint64_t last_ns = 0;
  };

  const std::string path_;
  const SinkOptions options_;
  std::string moved_aside_;  // where a store of an older schema went, if one did
  Db db_;                    // the writer thread's (and start()'s) only, like everything below
  std::unordered_map<std::string, VmRows> live_;  // by VM name
  std::unordered_map<const FeatureTable*, TableStatements> statements_;
  uint64_t newest_ns_ = 0;
};

// ---------------------------------------------------------------------------
// The reader.

class SqliteStore final : public FrameStore {
 public:
  explicit SqliteStore(std::string path) : path_(std::move(path)) {}

  Result<void> open() {
    NFM_TRY(db_.open(path_, SQLITE_OPEN_READONLY));
    // Not ours, or not a database at all: say so now rather than on first use.
    NFM_ASSIGN(sqlite3_stmt * s,
               db_.prepare("SELECT count(*) FROM sqlite_master WHERE name='frames'"));
    if (sqlite3_step(s) != SQLITE_ROW) return db_.error("not a database");
    if (sqlite3_column_int(s, 0) != 1)
      return make_error(Errc::bad_format,
                        fmt::format("sqlite:{}: not an nfm frame store (no frames table)", path_));
    // Schema 1 kept every frame's whole JSON; schema 2 its rows as versions.
    NFM_ASSIGN(sqlite3_stmt * c, db_.prepare("SELECT count(*) FROM pragma_table_info('frames') "
                                             "WHERE name = 'sections'"));
    if (sqlite3_step(c) != SQLITE_ROW) return db_.error("cannot read the frames table");
    versions_ = sqlite3_column_int(c, 0) == 1;
    return {};
  }

  std::string describe() const override { return "sqlite:" + path_; }

  Result<std::vector<StoredVm>> vms() override {
    std::lock_guard lock(mutex_);
    NFM_ASSIGN(sqlite3_stmt * s,
               db_.prepare("SELECT vm, host, count(*), min(host_time_ns), max(host_time_ns), "
                           "(SELECT vm_uuid FROM frames g WHERE g.vm = f.vm AND g.host = f.host "
                           " ORDER BY host_time_ns DESC, id DESC LIMIT 1), "
                           "(SELECT vm_pid FROM frames g WHERE g.vm = f.vm AND g.host = f.host "
                           " ORDER BY host_time_ns DESC, id DESC LIMIT 1) "
                           "FROM frames f GROUP BY vm, host ORDER BY vm, host"));
    std::vector<StoredVm> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      StoredVm v;
      v.vm.name = column_text(s, 0);
      v.vm.host = column_text(s, 1);
      v.frames = sqlite3_column_int64(s, 2);
      v.first_ns = sqlite3_column_int64(s, 3);
      v.last_ns = sqlite3_column_int64(s, 4);
      v.vm.uuid = column_text(s, 5);
      v.vm.pid = sqlite3_column_int64(s, 6);
      out.push_back(std::move(v));
    }
    if (rc != SQLITE_DONE) return db_.error("cannot list VMs");
    return out;
  }

  Result<std::vector<StoredFrameRef>> frames(std::string_view vm_name, uint64_t since_ns,
                                             uint64_t until_ns, size_t limit) override {
    std::lock_guard lock(mutex_);
    NFM_ASSIGN(sqlite3_stmt * s,
               db_.prepare("SELECT id, vm, vm_uuid, vm_pid, host, host_time_ns FROM frames "
                           "WHERE (?1 = '' OR vm = ?1) AND host_time_ns BETWEEN ?2 AND ?3 "
                           "ORDER BY host_time_ns, id LIMIT ?4"));
    sqlite3_bind_text(s, 1, vm_name.data(), static_cast<int>(vm_name.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, clamp_i64(since_ns));
    sqlite3_bind_int64(s, 3, clamp_i64(until_ns));
    sqlite3_bind_int64(s, 4, clamp_i64(limit));
    std::vector<StoredFrameRef> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      StoredFrameRef r;
      r.id = sqlite3_column_int64(s, 0);
      r.vm.name = column_text(s, 1);
      r.vm.uuid = column_text(s, 2);
      r.vm.pid = sqlite3_column_int64(s, 3);
      r.vm.host = column_text(s, 4);
      r.host_time_ns = sqlite3_column_int64(s, 5);
      out.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return db_.error("cannot list frames");
    return out;
  }

  Result<Frame> load(int64_t id) override {
    std::lock_guard lock(mutex_);
    NFM_ASSIGN(sqlite3_stmt * s,
               db_.prepare(versions_ ? "SELECT frame, sections FROM frames WHERE id = ?"
                                     : "SELECT frame, '' FROM frames WHERE id = ?"));
    sqlite3_bind_int64(s, 1, id);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
      return make_error(Errc::not_found, fmt::format("sqlite:{}: no frame {}", path_, id));
    if (rc != SQLITE_ROW) return db_.error("cannot load a frame");
    return parse(column_text(s, 0), column_text(s, 1), id);
  }

  Result<std::vector<Frame>> latest() override {
    std::lock_guard lock(mutex_);
    NFM_ASSIGN(
        sqlite3_stmt * s,
        db_.prepare(std::string(versions_ ? "SELECT id, frame, sections" : "SELECT id, frame, ''") +
                    " FROM frames WHERE id IN ("
                    "SELECT (SELECT id FROM frames g WHERE g.vm = f.vm AND g.host = f.host "
                    " ORDER BY host_time_ns DESC, id DESC LIMIT 1) "
                    "FROM frames f GROUP BY vm, host) ORDER BY vm, host"));
    std::vector<Frame> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      NFM_ASSIGN(Frame f, parse(column_text(s, 1), column_text(s, 2), sqlite3_column_int64(s, 0)));
      out.push_back(std::move(f));
    }
    if (rc != SQLITE_DONE) return db_.error("cannot read the latest frames");
    return out;
  }

 private:
  // A frame's JSON; in schema 2 without its sections, which `sections` names as runs
  // of row ids in each feature table.
  Result<Frame> parse(const std::string& text, const std::string& sections, int64_t id) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return make_error(Errc::bad_format,
                        fmt::format("sqlite:{}: frame {} is not JSON", path_, id));
    if (!sections.empty()) {
      const json runs = json::parse(sections, nullptr, false);
      if (!runs.is_object())
        return make_error(Errc::bad_format,
                          fmt::format("sqlite:{}: frame {}: its sections are not JSON", path_, id));
      for (const FeatureTable& t : store::feature_tables()) {
        auto it = runs.find(t.name);
        if (it == runs.end()) continue;
        NFM_ASSIGN(json rows, read_rows(t, *it, id));
        if (!t.object)
          j[t.name] = std::move(rows);
        else if (rows.size() == 1)
          j[t.name] = std::move(rows[0]);
      }
    }
    Result<Frame> f = frame_from_json(j);
    if (!f)
      return make_error(f.error().code,
                        fmt::format("sqlite:{}: frame {}: {}", path_, id, f.error().message));
    return f;
  }

  // The rows of runs [[first row id, count], ...] of table `t`, in order.
  Result<json> read_rows(const FeatureTable& t, const json& runs, int64_t id) {
    std::string sql = "SELECT row_id";
    for (const store::Column& c : t.columns) sql += ", " + quoted(c.name);
    sql += " FROM " + t.name + " WHERE row_id BETWEEN ? AND ? ORDER BY row_id";
    NFM_ASSIGN(sqlite3_stmt * s, db_.prepare(sql));
    json rows = json::array();
    for (const json& run : runs) {
      if (!run.is_array() || run.size() != 2 || !run[0].is_number_integer() ||
          !run[1].is_number_integer() || run[1].get<int64_t>() < 1)
        return make_error(Errc::bad_format,
                          fmt::format("sqlite:{}: frame {}: bad run in {}", path_, id, t.name));
      const auto first = run[0].get<int64_t>(), count = run[1].get<int64_t>();
      sqlite3_reset(s);
      sqlite3_bind_int64(s, 1, first);
      sqlite3_bind_int64(s, 2, first + count - 1);
      int64_t got = 0;
      int rc;
      while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json row = json::object();
        for (size_t i = 0; i < t.columns.size(); ++i)
          put_column(row, t.columns[i], s, static_cast<int>(i) + 1);
        rows.push_back(std::move(row));
        ++got;
      }
      if (rc != SQLITE_DONE) return db_.error("cannot read " + t.name);
      if (got != count)
        return make_error(Errc::bad_format,
                          fmt::format("sqlite:{}: frame {}: {} of its {} rows of {} are missing",
                                      path_, id, count - got, count, t.name));
    }
    return rows;
  }

  // A column's value back into the row's JSON as the sink wrote it: the key is left
  // out where the writer filled in the column's fallback for it, or had no value.
  static void put_column(json& row, const store::Column& c, sqlite3_stmt* s, int i) {
    json v;
    switch (sqlite3_column_type(s, i)) {
      case SQLITE_NULL:
        if (!c.nullable) return;
        break;
      case SQLITE_INTEGER: {
        const int64_t n = sqlite3_column_int64(s, i);
        if (c.type == ColumnType::boolean)
          v = n != 0;
        else if (c.type == ColumnType::uint64)
          v = static_cast<uint64_t>(n);
        else
          v = n;
        break;
      }
      case SQLITE_FLOAT:
        v = sqlite3_column_double(s, i);
        break;
      default: {
        std::string text = column_text(s, i);
        if (c.type == ColumnType::text_list) {
          v = json::parse(text, nullptr, false);
          if (v.is_discarded()) v = std::move(text);
        } else {
          v = std::move(text);
        }
      }
    }
    if (!c.fallback.is_null() && v == c.fallback) return;
    row[c.name] = std::move(v);
  }

  const std::string path_;
  std::mutex mutex_;
  Db db_;
  bool versions_ = false;  // schema 2
};

}  // namespace

Result<std::unique_ptr<FrameSink>> open_sqlite_sink(const std::string& path,
                                                    const SinkOptions& options) {
  if (path.empty()) return make_error(Errc::invalid_argument, "sqlite: needs a path (sqlite:PATH)");
  auto sink = std::make_unique<SqliteSink>(path, options);
  NFM_TRY(sink->start());
  return std::unique_ptr<FrameSink>(std::move(sink));
}

Result<std::string> default_sqlite_path() {
  std::filesystem::path path;
  if (const char* env = getenv("NFM_STORE_PATH"); env && *env) {
    path = env;
  } else if (geteuid() == 0) {
    path = "/var/lib/nfm/frames.db";
  } else if (const char* state = getenv("XDG_STATE_HOME"); state && *state) {
    path = std::filesystem::path(state) / "nfm/frames.db";
  } else if (const char* home = getenv("HOME"); home && *home) {
    path = std::filesystem::path(home) / ".local/state/nfm/frames.db";
  } else {
    return make_error(Errc::not_found,
                      "no place for the default frame store: set NFM_STORE_PATH or --emit");
  }
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (ec)
    return make_error(
        Errc::io, fmt::format("cannot create {}: {}", path.parent_path().string(), ec.message()));
  return path.string();
}

Result<std::unique_ptr<FrameStore>> open_sqlite_store(const std::string& path) {
  if (path.empty()) return make_error(Errc::invalid_argument, "sqlite: needs a path (sqlite:PATH)");
  auto store = std::make_unique<SqliteStore>(path);
  NFM_TRY(store->open());
  return std::unique_ptr<FrameStore>(std::move(store));
}

}  // namespace nfm
