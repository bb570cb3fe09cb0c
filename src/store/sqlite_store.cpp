#include "store/sqlite_store.h"

#include <fmt/core.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>

#include "frame/frame_json.h"
#include "store/queued_sink.h"
#include "store/store_schema.h"

namespace nfm {

using json = nlohmann::json;
using store::ColumnType;
using store::FeatureTable;

namespace {

constexpr int kSchemaVersion = 1;  // PRAGMA user_version of the databases we write

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

class SqliteSink final : public QueuedSink {
 public:
  SqliteSink(std::string path, const SinkOptions& options)
      : QueuedSink({.limit = std::max<uint64_t>(options.buffer_frames, 1)}),
        path_(std::move(path)),
        options_(options) {}

  ~SqliteSink() override { stop_writer(); }

  Result<void> start() {
    NFM_TRY(db_.open(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    NFM_TRY(db_.exec("PRAGMA journal_mode=WAL"));
    NFM_TRY(db_.exec("PRAGMA synchronous=NORMAL"));
    NFM_TRY(create_tables());
    start_writer();
    return {};
  }

  std::string describe() const override { return "sqlite:" + path_; }

 private:
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
                 "  frame TEXT NOT NULL\n"
                 ");\n"
                 "CREATE INDEX IF NOT EXISTS frames_vm_time ON frames(vm, host_time_ns);\n"
                 "CREATE INDEX IF NOT EXISTS frames_time ON frames(host_time_ns);"));
    for (const FeatureTable& t : store::feature_tables()) {
      std::string sql = "CREATE TABLE IF NOT EXISTS " + t.name +
                        " (\n  frame_id INTEGER NOT NULL,\n  vm TEXT NOT NULL,\n"
                        "  host_time_ns INTEGER NOT NULL";
      for (const store::Column& c : t.columns)
        sql += fmt::format(",\n  {} {}", quoted(c.name), sql_type(c.type));
      sql += "\n);\n";
      sql +=
          fmt::format("CREATE INDEX IF NOT EXISTS {0}_vm_time ON {0}(vm, host_time_ns);\n", t.name);
      sql += fmt::format("CREATE INDEX IF NOT EXISTS {0}_frame ON {0}(frame_id);", t.name);
      NFM_TRY(db_.exec(sql));
      NFM_TRY(add_missing_columns(t));
    }
    return db_.exec(fmt::format("PRAGMA user_version={}", kSchemaVersion));
  }

  // A store written by an older nfm lacks the columns features declared since:
  // they are added (NULL in the old rows), so the store keeps taking frames.
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

  // One transaction per batch; a batch that fails is rolled back and dropped.
  Result<void> deliver(const QueuedSink::Batch& frames) override { return write_batch(frames); }

  void forget(const std::string& vm) override { kmsg_.forget(vm); }

  Result<void> write_batch(const std::vector<std::shared_ptr<const Frame>>& batch) {
    NFM_TRY(db_.exec("BEGIN IMMEDIATE"));
    Result<void> r = [&]() -> Result<void> {
      for (const auto& f : batch) NFM_TRY(insert(*f));
      return retain();
    }();
    if (!r) {
      (void)db_.exec("ROLLBACK");
      return r;
    }
    return db_.exec("COMMIT");
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

  Result<void> insert(const Frame& frame) {
    const json j = frame_json(frame);
    const FrameMeta& m = frame.meta;
    const std::string vm = m.vm.name;
    bool partial = false;
    for (const auto& [_, status] : m.features) partial |= status.partial();
    NFM_ASSIGN(sqlite3_stmt * s,
               db_.prepare("INSERT INTO frames (vm, vm_uuid, vm_pid, host, host_time_ns, "
                           "duration_ns, kernel_release, target, partial, frame) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?)"));
    const std::string text = dump_json(j, -1);
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

    for (const FeatureTable& t : store::feature_tables()) {
      const std::vector<const json*> rows = store::section_rows(t, j);
      if (rows.empty()) continue;
      const bool kmsg = t.name == "kmsg";
      if (kmsg) kmsg_.begin_frame(vm, j.at("kmsg"));
      std::string sql = "INSERT INTO " + t.name + " (frame_id, vm, host_time_ns";
      std::string marks = "?,?,?";
      for (const store::Column& c : t.columns) {
        sql += "," + quoted(c.name);
        marks += ",?";
      }
      sql += ") VALUES (" + marks + ")";
      NFM_ASSIGN(sqlite3_stmt * row_stmt, db_.prepare(sql));
      for (const json* row : rows) {
        if (kmsg) {
          auto seq = row->find("seq");
          if (seq != row->end() && seq->is_number_unsigned() && !kmsg_.is_new(seq->get<uint64_t>()))
            continue;
        }
        sqlite3_reset(row_stmt);
        sqlite3_clear_bindings(row_stmt);
        sqlite3_bind_int64(row_stmt, 1, id);
        sqlite3_bind_text(row_stmt, 2, vm.data(), static_cast<int>(vm.size()), SQLITE_TRANSIENT);
        sqlite3_bind_int64(row_stmt, 3, clamp_i64(m.host_time_ns));
        int i = 4;
        for (const store::Column& c : t.columns)
          NFM_TRY(bind(row_stmt, i++, c, store::column_value(c, *row)));
        NFM_TRY(step_done(row_stmt, ("cannot insert into " + t.name).c_str()));
      }
      if (kmsg) kmsg_.end_frame(vm);
    }
    return {};
  }

  Result<void> retain() {
    if (!options_.retain_ns || newest_ns_ <= options_.retain_ns) return {};
    const int64_t cutoff = clamp_i64(newest_ns_ - options_.retain_ns);
    for (const FeatureTable& t : store::feature_tables()) {
      NFM_ASSIGN(sqlite3_stmt * s,
                 db_.prepare("DELETE FROM " + t.name +
                             " WHERE frame_id IN (SELECT id FROM frames WHERE host_time_ns < ?)"));
      sqlite3_bind_int64(s, 1, cutoff);
      NFM_TRY(step_done(s, "cannot delete old rows"));
    }
    NFM_ASSIGN(sqlite3_stmt * s, db_.prepare("DELETE FROM frames WHERE host_time_ns < ?"));
    sqlite3_bind_int64(s, 1, cutoff);
    return step_done(s, "cannot delete old frames");
  }

  const std::string path_;
  const SinkOptions options_;
  Db db_;  // the writer thread's (and start()'s) only, like everything below
  store::KmsgDedup kmsg_;
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
    NFM_ASSIGN(sqlite3_stmt * s, db_.prepare("SELECT frame FROM frames WHERE id = ?"));
    sqlite3_bind_int64(s, 1, id);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
      return make_error(Errc::not_found, fmt::format("sqlite:{}: no frame {}", path_, id));
    if (rc != SQLITE_ROW) return db_.error("cannot load a frame");
    return parse(column_text(s, 0), id);
  }

  Result<std::vector<Frame>> latest() override {
    std::lock_guard lock(mutex_);
    NFM_ASSIGN(sqlite3_stmt * s,
               db_.prepare("SELECT id, frame FROM frames WHERE id IN ("
                           "SELECT (SELECT id FROM frames g WHERE g.vm = f.vm AND g.host = f.host "
                           " ORDER BY host_time_ns DESC, id DESC LIMIT 1) "
                           "FROM frames f GROUP BY vm, host) ORDER BY vm, host"));
    std::vector<Frame> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      NFM_ASSIGN(Frame f, parse(column_text(s, 1), sqlite3_column_int64(s, 0)));
      out.push_back(std::move(f));
    }
    if (rc != SQLITE_DONE) return db_.error("cannot read the latest frames");
    return out;
  }

 private:
  Result<Frame> parse(const std::string& text, int64_t id) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded())
      return make_error(Errc::bad_format,
                        fmt::format("sqlite:{}: frame {} is not JSON", path_, id));
    Result<Frame> f = frame_from_json(j);
    if (!f)
      return make_error(f.error().code,
                        fmt::format("sqlite:{}: frame {}: {}", path_, id, f.error().message));
    return f;
  }

  const std::string path_;
  std::mutex mutex_;
  Db db_;
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
