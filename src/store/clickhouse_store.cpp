#include "store/clickhouse_store.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include "frame/frame_json.h"
#include "store/http_client.h"
#include "store/queued_sink.h"
#include "store/store_schema.h"

namespace nfm {

using json = nlohmann::json;
using store::ColumnType;
using store::FeatureTable;

namespace {

std::string ch_type(const store::Column& c) {
  std::string t;
  switch (c.type) {
    case ColumnType::int64:
      t = "Int64";
      break;
    case ColumnType::uint64:
      t = "UInt64";
      break;
    case ColumnType::real:
      t = "Float64";
      break;
    case ColumnType::text:
      t = "String";
      break;
    case ColumnType::boolean:
      t = "UInt8";
      break;
    case ColumnType::text_list:
      return "Array(String)";
  }
  return c.nullable ? "Nullable(" + t + ")" : t;
}

// A JSON value as the column's ClickHouse type accepts it in JSONEachRow.
json ch_value(const store::Column& c, const json& v) {
  if (v.is_null() && c.nullable) return nullptr;
  switch (c.type) {
    case ColumnType::int64:
      return v.is_number_integer() ? json(v.get<int64_t>()) : json(0);
    case ColumnType::uint64:
      return v.is_number_unsigned() ? v : json(0);
    case ColumnType::real:
      return v.is_number() ? json(v.get<double>()) : json(0.0);
    case ColumnType::text:
      return v.is_string() ? v : v.is_null() ? json("") : json(dump_json(v, -1));
    case ColumnType::boolean:
      return v.is_boolean() ? json(v.get<bool>() ? 1 : 0) : v.is_number_integer() ? v : json(0);
    case ColumnType::text_list: {
      json out = json::array();
      if (v.is_array())
        for (const json& e : v) out.push_back(e.is_string() ? e : json(dump_json(e, -1)));
      return out;
    }
  }
  return nullptr;
}

// Every table nfm writes, with its columns as CREATE TABLE lists them (name, type):
// `frames`, one per feature (store_schema.h), then `row_ends`. Columns added since
// an older nfm made a table come last: ALTER TABLE adds them there.
struct TableDef {
  std::string name;
  std::vector<std::pair<std::string, std::string>> columns;
};

constexpr const char* kEnds = "row_ends";

std::vector<TableDef> table_defs() {
  std::vector<TableDef> out;
  out.push_back({"frames",
                 {{"frame_id", "Int64"},
                  {"vm", "String"},
                  {"vm_uuid", "String"},
                  {"vm_pid", "Int64"},
                  {"host", "String"},
                  {"time", "DateTime"},
                  {"host_time_ns", "UInt64"},
                  {"duration_ns", "UInt64"},
                  {"kernel_release", "String"},
                  {"target", "String"},
                  {"partial", "UInt8"},
                  {"frame", "String"},
                  {"session", "UInt32"},
                  {"sections", "String"}}});
  for (const FeatureTable& t : store::feature_tables()) {
    TableDef d{t.name,
               {{"frame_id", "Int64"},
                {"vm", "String"},
                {"host", "String"},
                {"time", "DateTime"},
                {"host_time_ns", "UInt64"}}};
    for (const store::Column& c : t.columns) d.columns.emplace_back(c.name, ch_type(c));
    d.columns.emplace_back("row_id", "Int64");
    d.columns.emplace_back("session", "UInt32");
    out.push_back(std::move(d));
  }
  out.push_back({kEnds,
                 {{"vm", "String"},
                  {"host", "String"},
                  {"session", "UInt32"},
                  {"row_id", "Int64"},
                  {"until_frame_id", "Int64"},
                  {"until_ns", "UInt64"},
                  {"time", "DateTime"}}});
  return out;
}

std::string column_list(const TableDef& t) {
  std::string out;
  for (const auto& [name, type] : t.columns) {
    if (!out.empty()) out += ", ";
    out.append("`").append(name).append("` ").append(type);
  }
  return out;
}

// A single server's tables; a cluster's local tables are the replicated kind of it.
constexpr const char* kPartitionAndOrder = " PARTITION BY toYYYYMMDD(time) ORDER BY (vm, time)";

// A ClickHouse string literal.
std::string literal(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr uint64_t kSecondsPerDay = 86400;

// Ids of frames and row versions: the writer's session in the high 32 bits, a
// sequence in the low 32 (one sequence for both, so an id is unique per writer).
// A session is 31 random bits (ids stay positive Int64), never 0 (rows of the first
// schema have 0).
constexpr int kSequenceBits = 32;
int64_t make_id(uint32_t session, uint64_t sequence) {
  return static_cast<int64_t>((static_cast<uint64_t>(session) << kSequenceBits) + sequence);
}
uint32_t session_of(int64_t id) {
  return static_cast<uint32_t>(static_cast<uint64_t>(id) >> kSequenceBits);
}

// Statements and queries against one server and database.
class Connection {
 public:
  explicit Connection(ClickHouseUrl url) : url_(std::move(url)) {}
  const ClickHouseUrl& url() const { return url_; }
  std::string table(const std::string& name) const {
    return "`" + url_.database + "`.`" + name + "`";
  }

  // On a cluster, a query over a Distributed table with an IN or JOIN over another
  // (the state query, the ends of versions) answers the inner one from each shard's
  // local table: a VM's frames, versions and their ends are on one shard.
  Result<std::string> run(const std::string& sql, long timeout_ms = 30000) {
    return http_.post(
        url_.base + "?output_format_json_quote_64bit_integers=0&distributed_product_mode=local",
        sql, timeout_ms);
  }
  Result<void> insert(const std::string& table_name, const std::string& rows) {
    const std::string query = "INSERT INTO " + table(table_name) + " FORMAT JSONEachRow";
    NFM_TRY(http_.post(url_.base + "?query=" + HttpClient::escape(query), rows, 60000));
    return {};
  }
  // The rows of a `... FORMAT JSONEachRow` query.
  Result<std::vector<json>> rows(const std::string& sql) {
    NFM_ASSIGN(std::string text, run(sql + " FORMAT JSONEachRow"));
    std::vector<json> out;
    size_t at = 0;
    while (at < text.size()) {
      size_t end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      if (end > at) {
        json j = json::parse(text.begin() + at, text.begin() + end, nullptr, false);
        if (j.is_discarded())
          return make_error(Errc::bad_format, "ClickHouse answered something that is not JSON");
        out.push_back(std::move(j));
      }
      at = end + 1;
    }
    return out;
  }

  Result<void> create_schema() {
    NFM_TRY(run("CREATE DATABASE IF NOT EXISTS `" + url_.database + "`"));
    const std::vector<TableDef> defs = table_defs();
    for (const TableDef& t : defs)
      NFM_TRY(run("CREATE TABLE IF NOT EXISTS " + table(t.name) + " (" + column_list(t) +
                  ") ENGINE = MergeTree()" + kPartitionAndOrder));
    return add_missing_columns(defs);
  }

  // A database written by an older nfm lacks the columns added since (features'
  // new columns, the row versions' row_id and session, frames' sections): they are
  // added, with their type's default in the old rows.
  Result<void> add_missing_columns(const std::vector<TableDef>& defs) {
    NFM_ASSIGN(std::vector<json> have, rows("SELECT table, name FROM system.columns WHERE "
                                            "database = " +
                                            literal(url_.database)));
    std::set<std::pair<std::string, std::string>> names;
    for (const json& row : have)
      if (row.value("table", json()).is_string() && row.value("name", json()).is_string())
        names.emplace(row["table"], row["name"]);
    // Names are ours ([a-z_0-9]), so they can be quoted into the statement.
    for (const TableDef& t : defs)
      for (const auto& [name, type] : t.columns)
        if (!names.contains({t.name, name}))
          NFM_TRY(run(fmt::format("ALTER TABLE {} ADD COLUMN `{}` {}", table(t.name), name, type)));
    return {};
  }

 private:
  ClickHouseUrl url_;
  HttpClient http_;
};

std::string error_text(const ClickHouseUrl& url, const Error& e) {
  return fmt::format("clickhouse {}{}: {}", url.base, url.database, e.message);
}

// ---------------------------------------------------------------------------
// The sink.

// Row versions, insert-only (ClickHouse 18.16 has no cheap UPDATE). A feature
// table holds a row once per version: written when it appears or one of its values
// changes, with the frame that first showed it; when the VM's next frame no longer
// has it, its end goes to `row_ends` (row_id, until_frame_id, until_ns). A frame is
// its meta JSON plus, per section, runs [first row_id, count] (frames.sections),
// so readers rebuild it exactly. Ids come from the writer's session (make_id), so
// "the state at frame F" takes only rows of F's session: a restarted writer never
// mixes its rows with those its predecessor left open.
class ClickHouseSink final : public QueuedSink {
 public:
  ClickHouseSink(std::string spec, ClickHouseUrl url, const SinkOptions& options)
      : QueuedSink({.limit = std::max<uint64_t>(options.buffer_frames, 1),
                    .batch_max = std::clamp<size_t>(options.buffer_frames / 4, 1, 64),
                    .retry = true,
                    .flush_wait = std::chrono::seconds(10)}),
        spec_(std::move(spec)),
        connection_(std::move(url)) {
    new_session();
    start_writer();
  }

  ~ClickHouseSink() override { stop_writer(); }

  std::string describe() const override { return spec_; }

 private:
  // A session ends this many ids before its sequence would wrap: more than any frame
  // has rows (the crawler bounds them far lower), so a frame never straddles two.
  static constexpr uint64_t kSequenceReserve = 1ull << 28;
  // How many versions the writer closes for its predecessor's sessions per batch at
  // most (the rows of those VMs' last frames: the crawler bounds them far lower).
  static constexpr size_t kCloseLimit = 1 << 22;

  // A batch on its way: rendered once, its tables sent one by one (frames last)
  // and each only once, so a retry after a partial failure adds no duplicates.
  struct Batch {
    size_t frames = 0;
    std::vector<std::pair<std::string, std::string>> tables;  // table, JSONEachRow body
    size_t sent = 0;                                          // tables delivered
    // VMs this writer had not written before: versions an earlier session (a writer
    // before a restart) left open are closed before their frames go.
    std::vector<std::pair<std::string, std::string>> new_vms;  // vm, host
    bool earlier_closed = false;
  };

  // What the writer keeps of a VM: the row versions its newest frame showed (what
  // the SQLite writer keeps too).
  struct VmRows {
    std::unordered_map<const FeatureTable*, store::LiveRows> sections;
    std::string host;
    int64_t last_frame_id = 0;
    uint64_t last_ns = 0;
    uint64_t day = 0;  // of the newest frame, UTC
  };

  void new_session() {
    static thread_local std::mt19937_64 random{std::random_device{}()};
    const uint32_t old = session_;
    do session_ = static_cast<uint32_t>(random() & 0x7fffffffu);
    while (session_ == 0 || session_ == old);
    sequence_ = 0;
  }
  int64_t next_id() { return make_id(session_, ++sequence_); }

  // The end of version `row_id` of `vm` at frame `until_id` (time `until_ns`).
  static void append_end(std::string& ends, const std::string& vm_json,
                         const std::string& host_json, int64_t row_id, int64_t until_id,
                         uint64_t until_ns) {
    ends += fmt::format(
        "{{\"vm\":{},\"host\":{},\"session\":{},\"row_id\":{},\"until_frame_id\":{},"
        "\"until_ns\":{},\"time\":{}}}\n",
        vm_json, host_json, session_of(row_id), row_id, until_id, until_ns,
        until_ns / kNsPerSecond);
  }

  // Every version `live` holds ends at `until_id`.
  static void end_all(std::string& ends, const std::string& vm, const VmRows& live,
                      int64_t until_id, uint64_t until_ns) {
    const std::string vm_json = dump_json(vm, -1), host_json = dump_json(live.host, -1);
    for (const auto& [_, rows] : live.sections)
      for (const auto& [key, row_id] : rows)
        append_end(ends, vm_json, host_json, row_id, until_id, until_ns);
  }

  Batch render(const QueuedSink::Batch& frames) {
    Batch b;
    b.frames = frames.size();
    std::map<std::string, std::string> bodies;
    std::string ends = std::move(pending_ends_);
    pending_ends_.clear();
    std::string frame_rows;
    for (const auto& f : frames) {
      const FrameMeta& m = f->meta;
      if (sequence_ >= (1ull << kSequenceBits) - kSequenceReserve) {
        // A new session: every VM's versions end after its newest frame and its next
        // frame writes its rows anew.
        for (const auto& [vm, live] : live_)
          end_all(ends, vm, live, live.last_frame_id + 1, live.last_ns + 1);
        live_.clear();
        new_session();
      }
      if (known_vms_.insert(m.vm.name).second) b.new_vms.emplace_back(m.vm.name, m.vm.host);
      const int64_t id = next_id();
      VmRows& live = live_[m.vm.name];
      // A day's first frame writes every row anew (ends the versions of the day
      // before): every version a frame shows is of that frame's UTC day, so a reader
      // looks in one day and a day's partitions can be dropped with the next day's
      // frames still whole (docs/stores.md).
      const uint64_t day = m.host_time_ns / kNsPerSecond / kSecondsPerDay;
      if (day != live.day) {
        end_all(ends, m.vm.name, live, id, m.host_time_ns);
        live.sections.clear();
        live.day = day;
      }
      live.host = m.vm.host;
      const VersionContext ctx{dump_json(m.vm.name, -1), dump_json(m.vm.host, -1), id,
                               m.host_time_ns};
      json runs = json::object();
      for (const FeatureTable& t : store::feature_tables()) {
        auto section = f->sections.find(t.name);
        if (section == f->sections.end()) continue;
        runs[t.name] =
            write_section(t, section->second, live.sections[&t], ctx, bodies[t.name], ends);
      }
      live.last_frame_id = id;
      live.last_ns = m.host_time_ns;

      bool partial = false;
      for (const auto& [_, status] : m.features) partial |= status.partial();
      const json row = {{"frame_id", id},
                        {"session", session_},
                        {"vm", m.vm.name},
                        {"vm_uuid", m.vm.uuid},
                        {"vm_pid", m.vm.pid},
                        {"host", m.vm.host},
                        {"time", m.host_time_ns / kNsPerSecond},
                        {"host_time_ns", m.host_time_ns},
                        {"duration_ns", m.duration_ns},
                        {"kernel_release", m.kernel.release},
                        {"target", m.target},
                        {"partial", partial ? 1 : 0},
                        {"frame", dump_json(frame_meta_json(*f), -1)},
                        {"sections", dump_json(runs, -1)}};
      frame_rows += dump_json(row, -1) + "\n";
    }
    for (auto& [table, body] : bodies)
      if (!body.empty()) b.tables.emplace_back(table, std::move(body));
    if (!ends.empty()) b.tables.emplace_back(kEnds, std::move(ends));
    b.tables.emplace_back("frames",
                          std::move(frame_rows));  // last: a frame is complete when listed
    return b;
  }

  // What every version a frame writes carries.
  struct VersionContext {
    std::string vm_json, host_json;  // as JSON strings
    int64_t frame_id;
    uint64_t time_ns;
  };

  // The row versions of one section (store::match_versions): new ones appended to
  // `body`, missing ones ended in `ends`. Returns the frame's rows as runs of row ids.
  json write_section(const FeatureTable& t, const std::any& section, store::LiveRows& live,
                     const VersionContext& ctx, std::string& body, std::string& ends) {
    auto runs = store::match_versions(
        t, section, live,
        {.add = [&](const std::vector<json>& values) -> Result<int64_t> {
           const int64_t row_id = next_id();
           append_version(body, t, values, ctx, row_id);
           return row_id;
         },
         .end = [&](int64_t row_id) -> Result<void> {
           append_end(ends, ctx.vm_json, ctx.host_json, row_id, ctx.frame_id, ctx.time_ns);
           return {};
         }});
    return runs ? std::move(runs).value() : json::array();  // neither callback fails
  }

  static void append_version(std::string& body, const FeatureTable& t,
                             const std::vector<json>& values, const VersionContext& ctx,
                             int64_t row_id) {
    body += fmt::format(
        "{{\"row_id\":{},\"session\":{},\"frame_id\":{},\"vm\":{},\"host\":{},\"time\":{},"
        "\"host_time_ns\":{}",
        row_id, session_of(row_id), ctx.frame_id, ctx.vm_json, ctx.host_json,
        ctx.time_ns / kNsPerSecond, ctx.time_ns);
    for (size_t i = 0; i < t.columns.size(); ++i) {
      const store::Column& c = t.columns[i];
      const json& v = i < values.size() && !values[i].is_discarded() ? values[i] : c.fallback;
      body += ",\"" + c.name + "\":";
      body += dump_json(ch_value(c, v), -1);
    }
    body += "}\n";
  }

  // The versions an earlier session of these VMs left open (a writer before a
  // restart: it could not end them) end just after that session's last frame of the
  // VM, as the SQLite writer ends them when it starts. Only the VM's newest earlier
  // session, only that session's last day (the day's first frame rewrote the rest).
  Result<void> close_earlier_sessions(const std::vector<std::pair<std::string, std::string>>& vms) {
    std::string which;
    for (const auto& [vm, host] : vms)
      which += (which.empty() ? "" : ",") + fmt::format("({},{})", literal(vm), literal(host));
    NFM_ASSIGN(std::vector<json> sessions,
               connection_.rows(fmt::format(
                   "SELECT vm, host, session, max(frame_id) AS last_id, max(host_time_ns) AS "
                   "last_ns FROM {} WHERE (vm, host) IN ({}) AND session NOT IN (0, {}) GROUP BY "
                   "vm, host, session ORDER BY vm, host, last_ns DESC LIMIT 1 BY vm, host",
                   connection_.table("frames"), which, session_)));
    if (sessions.empty()) return {};
    struct Last {
      int64_t id;
      uint64_t ns;
    };
    std::map<std::pair<std::string, std::string>, Last> last;  // by (vm, host)
    std::string rows_where, ends_where;
    for (const json& s : sessions) {
      const std::string vm = s.value("vm", ""), host = s.value("host", "");
      const auto session = s.value("session", uint64_t{0});
      const auto last_ns = s.value("last_ns", uint64_t{0});
      last[{vm, host}] = {s.value("last_id", int64_t{0}), last_ns};
      const std::string cond = fmt::format(
          "(vm = {} AND host = {} AND session = {} AND time >= {})", literal(vm), literal(host),
          session, last_ns / kNsPerSecond / kSecondsPerDay * kSecondsPerDay);
      rows_where += (rows_where.empty() ? "" : " OR ") + cond;
    }
    ends_where = rows_where;
    std::string open;
    for (const FeatureTable& t : store::feature_tables())
      open += fmt::format("{}SELECT vm, host, row_id FROM {} WHERE ({})",
                          open.empty() ? "" : " UNION ALL ", connection_.table(t.name), rows_where);
    NFM_ASSIGN(std::vector<json> rows,
               connection_.rows(fmt::format(
                   "SELECT vm, host, row_id FROM ({}) WHERE (vm, host, row_id) NOT IN (SELECT vm, "
                   "host, row_id FROM {} WHERE {}) LIMIT {}",
                   open, connection_.table(kEnds), ends_where, kCloseLimit)));
    std::string ends;
    for (const json& r : rows) {
      const std::string vm = r.value("vm", ""), host = r.value("host", "");
      auto it = last.find({vm, host});
      if (it == last.end()) continue;
      append_end(ends, dump_json(vm, -1), dump_json(host, -1), r.value("row_id", int64_t{0}),
                 it->second.id + 1, it->second.ns + 1);
    }
    if (ends.empty()) return {};
    return connection_.insert(kEnds, ends);
  }

  Result<void> send(Batch& b) {
    if (!schema_ready_) {
      NFM_TRY(connection_.create_schema());
      schema_ready_ = true;
    }
    if (!b.earlier_closed && !b.new_vms.empty()) {
      if (Result<void> r = close_earlier_sessions(b.new_vms); !r) {
        schema_ready_ = false;
        return make_error(Errc::io, "closing an earlier session's rows: " + r.error().message);
      }
    }
    b.earlier_closed = true;
    for (; b.sent < b.tables.size(); ++b.sent) {
      Result<void> r = connection_.insert(b.tables[b.sent].first, b.tables[b.sent].second);
      if (!r) {
        schema_ready_ = false;  // a new server may have lost them: check again before the retry
        return make_error(
            Errc::io, fmt::format("insert into {}: {}", b.tables[b.sent].first, r.error().message));
      }
    }
    return {};
  }

  // Rendered once, then retried table by table until it is all delivered.
  Result<void> deliver(const QueuedSink::Batch& frames) override {
    if (!pending_) pending_ = render(frames);
    Result<void> r = send(*pending_);
    if (r) pending_.reset();
    return r;
  }

  // The VM is gone (its frames are delivered): its versions end after its last
  // frame. Sent now; if the server does not take them, with the next batch.
  void forget(const std::string& vm) override {
    known_vms_.erase(vm);
    auto it = live_.find(vm);
    if (it == live_.end()) return;
    end_all(pending_ends_, vm, it->second, it->second.last_frame_id + 1, it->second.last_ns + 1);
    live_.erase(it);
    if (schema_ready_ && connection_.insert(kEnds, pending_ends_)) pending_ends_.clear();
  }

  std::string describe_error(const Error& e) const override {
    return error_text(connection_.url(), e);
  }

  const std::string spec_;
  Connection connection_;  // the writer thread's, like everything below
  bool schema_ready_ = false;
  std::optional<Batch> pending_;
  uint32_t session_ = 0;
  uint64_t sequence_ = 0;
  std::unordered_map<std::string, VmRows> live_;  // by VM name
  std::set<std::string> known_vms_;               // VMs written (their earlier sessions closed)
  // Ends not delivered yet (a forgotten VM's): no more than the versions live_ held.
  std::string pending_ends_;
};

// ---------------------------------------------------------------------------
// The reader.

uint64_t u64(const json& row, const char* key) {
  auto it = row.find(key);
  if (it == row.end()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) return static_cast<uint64_t>(it->get<int64_t>());
  if (it->is_string()) return std::strtoull(it->get_ref<const std::string&>().c_str(), nullptr, 10);
  return 0;
}
int64_t i64(const json& row, const char* key) {
  auto it = row.find(key);
  if (it == row.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) return std::strtoll(it->get_ref<const std::string&>().c_str(), nullptr, 10);
  return 0;
}
std::string str(const json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A column's value as ClickHouse gives it back, as the frame's JSON had it; nullopt
// where the key was left out (the writer stored the column's fallback for it).
std::optional<json> frame_value(const store::Column& c, const json& v) {
  json out;
  if (v.is_null()) {
    if (!c.nullable) return std::nullopt;
  } else if (c.type == ColumnType::int64 && v.is_number_integer()) {
    out = v.get<int64_t>();
  } else if (c.type == ColumnType::uint64 && v.is_number_integer()) {
    out = v.get<uint64_t>();
  } else if (c.type == ColumnType::real && v.is_number()) {
    out = v.get<double>();
  } else if (c.type == ColumnType::boolean && v.is_number_integer()) {
    out = v.get<int64_t>() != 0;
  } else {
    out = v;
  }
  if (!c.fallback.is_null() && out == c.fallback) return std::nullopt;
  return out;
}

class ClickHouseStore final : public FrameStore {
 public:
  ClickHouseStore(std::string spec, ClickHouseUrl url)
      : spec_(std::move(spec)), c_(std::move(url)) {}

  Result<void> open() {
    auto r =
        c_.rows("SELECT name FROM system.columns WHERE database = " + literal(c_.url().database) +
                " AND table = 'frames'");
    if (!r) return wrap(r.error());
    if (r->empty())
      return make_error(Errc::not_found, fmt::format("{}: no frames table in database {}", spec_,
                                                     c_.url().database));
    // Written only by an nfm of the first schema (every frame's JSON whole): no sections.
    for (const json& row : *r) versions_ |= str(row, "name") == "sections";
    return {};
  }

  std::string describe() const override { return spec_; }

  Result<std::vector<StoredVm>> vms() override {
    std::lock_guard lock(mutex_);
    auto r = c_.rows(
        "SELECT vm, host, argMax(vm_uuid, host_time_ns) AS uuid, "
        "argMax(vm_pid, host_time_ns) AS pid, uniqExact(frame_id) AS frames, "
        "min(host_time_ns) AS first, max(host_time_ns) AS last FROM " +
        c_.table("frames") + " GROUP BY vm, host ORDER BY vm, host");
    if (!r) return wrap(r.error());
    std::vector<StoredVm> out;
    for (const json& row : *r) {
      StoredVm v;
      v.vm = {str(row, "vm"), str(row, "uuid"), i64(row, "pid"), str(row, "host")};
      v.frames = u64(row, "frames");
      v.first_ns = u64(row, "first");
      v.last_ns = u64(row, "last");
      out.push_back(std::move(v));
    }
    return out;
  }

  Result<std::vector<StoredFrameRef>> frames(std::string_view vm_name, uint64_t since_ns,
                                             uint64_t until_ns, size_t limit) override {
    std::lock_guard lock(mutex_);
    std::string where = fmt::format("host_time_ns BETWEEN {} AND {}", since_ns, until_ns);
    if (!vm_name.empty()) where += " AND vm = " + literal(vm_name);
    // GROUP BY frame_id: a batch retried after a lost answer may have landed twice.
    auto r = c_.rows(fmt::format(
        "SELECT frame_id, any(vm) AS f_vm, any(vm_uuid) AS f_uuid, any(vm_pid) AS f_pid, "
        "any(host) AS f_host, any(host_time_ns) AS f_time FROM {} WHERE {} GROUP BY frame_id "
        "ORDER BY f_time, frame_id LIMIT {}",
        c_.table("frames"), where, limit));
    if (!r) return wrap(r.error());
    std::vector<StoredFrameRef> out;
    for (const json& row : *r) {
      StoredFrameRef f;
      f.id = i64(row, "frame_id");
      f.vm = {str(row, "f_vm"), str(row, "f_uuid"), i64(row, "f_pid"), str(row, "f_host")};
      f.host_time_ns = u64(row, "f_time");
      out.push_back(std::move(f));
    }
    return out;
  }

  Result<Frame> load(int64_t id) override {
    std::lock_guard lock(mutex_);
    NFM_ASSIGN(std::vector<Frame> frames,
               rebuild(fmt::format("frame_id = {} ORDER BY frame_id LIMIT 1", id)));
    if (frames.empty())
      return make_error(Errc::not_found, fmt::format("{}: no frame {}", spec_, id));
    return std::move(frames.front());
  }

  Result<std::vector<Frame>> latest() override {
    std::lock_guard lock(mutex_);
    return rebuild(fmt::format(
        "(vm, host, host_time_ns) IN (SELECT vm, host, max(host_time_ns) FROM {} GROUP BY vm, "
        "host) ORDER BY vm, host LIMIT 1 BY vm, host",
        c_.table("frames")));
  }

 private:
  Error wrap(const Error& e) const { return make_error(e.code, spec_ + ": " + e.message); }

  // A stored frame before its sections are filled in.
  struct Pending {
    // Built in place and never moved or copied (a deque holds them).
    Pending() noexcept(false) = default;  // json and unordered_map may allocate
    Pending(const Pending&) = delete;
    Pending& operator=(const Pending&) = delete;
    int64_t id = 0;
    uint32_t session = 0;
    std::string vm, host;
    uint64_t time_ns = 0;
    json frame;  // the meta; a frame of the first schema: all of it
    json runs;   // per section: [[first row id, count], ...] (null: first schema)
    std::unordered_map<int64_t, json> rows;  // of the section being read, by row_id
  };

  // The frames `where` selects from the frames table, rebuilt from their meta, their
  // sections' runs and the feature tables' row versions.
  Result<std::vector<Frame>> rebuild(const std::string& where) {
    auto found =
        c_.rows(fmt::format("SELECT frame_id, {}, vm, host, host_time_ns, frame FROM {} WHERE {}",
                            versions_ ? "session, sections" : "0 AS session, '' AS sections",
                            c_.table("frames"), where));
    if (!found) return wrap(found.error());
    // A deque: a Pending is built in place and never moved (its row map stays put).
    std::deque<Pending> frames;
    for (json& row : *found) {
      Pending& p = frames.emplace_back();
      p.id = i64(row, "frame_id");
      p.session = static_cast<uint32_t>(u64(row, "session"));
      p.vm = str(row, "vm");
      p.host = str(row, "host");
      p.time_ns = u64(row, "host_time_ns");
      p.frame = json::parse(str(row, "frame"), nullptr, false);
      if (!p.frame.is_object())
        return make_error(Errc::bad_format, fmt::format("{}: frame {} is not JSON", spec_, p.id));
      const std::string sections = str(row, "sections");
      if (!sections.empty()) {
        p.runs = json::parse(sections, nullptr, false);
        if (!p.runs.is_object())
          return make_error(Errc::bad_format,
                            fmt::format("{}: frame {}: its sections are not JSON", spec_, p.id));
      }
    }
    for (const FeatureTable& t : store::feature_tables()) NFM_TRY(read_section(t, frames));
    std::vector<Frame> out;
    out.reserve(frames.size());
    for (Pending& p : frames) {
      Result<Frame> f = frame_from_json(p.frame);
      if (!f)
        return make_error(f.error().code,
                          fmt::format("{}: frame {}: {}", spec_, p.id, f.error().message));
      out.push_back(std::move(*f));
    }
    return out;
  }

  // Section `t` of each frame that has it: the versions its runs name, read with the
  // state query of docs/stores.md (F's session and UTC day, begun at or before F,
  // not ended by F), several frames per query (of distinct VMs: the ends' condition
  // is per VM).
  Result<void> read_section(const FeatureTable& t, std::deque<Pending>& frames) {
    std::vector<Pending*> todo;
    for (Pending& p : frames)
      if (p.runs.is_object() && p.runs.contains(t.name)) todo.push_back(&p);
    while (!todo.empty()) {
      std::vector<Pending*> chunk, later;
      std::set<std::pair<std::string, std::string>> vms;
      for (Pending* p : todo)
        (chunk.size() < kFramesPerQuery && vms.emplace(p->vm, p->host).second ? chunk : later)
            .push_back(p);
      NFM_TRY(read_rows(t, chunk));
      for (Pending* p : chunk) NFM_TRY(place_rows(t, *p));
      todo = std::move(later);
    }
    return {};
  }

  static constexpr size_t kFramesPerQuery = 100;  // the query's text stays far below 256 KiB

  Result<void> read_rows(const FeatureTable& t, const std::vector<Pending*>& chunk) {
    std::string rows_where, ends_where;
    std::map<std::pair<std::string, std::string>, Pending*> by_vm;
    for (Pending* p : chunk) {
      by_vm[{p->vm, p->host}] = p;
      const uint64_t day_start = p->time_ns / kNsPerSecond / kSecondsPerDay * kSecondsPerDay;
      const std::string vm = fmt::format(
          "vm = {} AND host = {} AND session = {} AND time BETWEEN "
          "{} AND {}",
          literal(p->vm), literal(p->host), p->session, day_start, p->time_ns / kNsPerSecond);
      rows_where +=
          fmt::format("{}({} AND frame_id <= {})", rows_where.empty() ? "" : " OR ", vm, p->id);
      ends_where += fmt::format("{}({} AND until_frame_id <= {})", ends_where.empty() ? "" : " OR ",
                                vm, p->id);
    }
    std::string columns = "vm, host, row_id";
    for (const store::Column& c : t.columns) columns += ", `" + c.name + "`";
    auto r = c_.rows(fmt::format(
        "SELECT {} FROM {} WHERE ({}) AND (vm, host, row_id) NOT IN (SELECT vm, host, row_id FROM "
        "{} WHERE {})",
        columns, c_.table(t.name), rows_where, c_.table(kEnds), ends_where));
    if (!r) return wrap(r.error());
    for (json& row : *r) {
      auto it = by_vm.find({str(row, "vm"), str(row, "host")});
      if (it == by_vm.end()) continue;
      json out = json::object();
      for (const store::Column& c : t.columns) {
        auto v = row.find(c.name);
        if (v == row.end()) continue;
        if (std::optional<json> value = frame_value(c, *v)) out[c.name] = std::move(*value);
      }
      // A retried insert may have landed twice: the same row_id, the same values.
      it->second->rows.emplace(i64(row, "row_id"), std::move(out));
    }
    return {};
  }

  // The section's rows in the order its runs give them.
  Result<void> place_rows(const FeatureTable& t, Pending& p) {
    json rows = json::array();
    for (const json& run : p.runs[t.name]) {
      if (!run.is_array() || run.size() != 2 || !run[0].is_number_integer() ||
          !run[1].is_number_integer() || run[1].get<int64_t>() < 1 ||
          run[1].get<int64_t>() > static_cast<int64_t>(p.rows.size()))
        return make_error(Errc::bad_format,
                          fmt::format("{}: frame {}: bad run in {}", spec_, p.id, t.name));
      const auto first = run[0].get<int64_t>(), count = run[1].get<int64_t>();
      for (int64_t id = first; id < first + count; ++id) {
        auto it = p.rows.find(id);
        if (it == p.rows.end())
          return make_error(Errc::bad_format, fmt::format("{}: frame {}: row {} of {} is missing",
                                                          spec_, p.id, id, t.name));
        rows.push_back(it->second);
      }
    }
    p.rows.clear();
    if (!t.object)
      p.frame[t.name] = std::move(rows);
    else if (rows.size() == 1)
      p.frame[t.name] = std::move(rows[0]);
    return {};
  }

  const std::string spec_;
  std::mutex mutex_;
  Connection c_;
  bool versions_ = false;  // frames have sections (row versions), not only whole JSON
};

}  // namespace

Result<ClickHouseUrl> parse_clickhouse_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return make_error(
        Errc::invalid_argument,
        fmt::format("clickhouse:{}: {} (expected clickhouse:http://HOST:PORT/DB)", url, why));
  };
  std::string_view rest = url;
  std::string scheme;
  if (rest.substr(0, 7) == "http://") {
    scheme = "http://";
  } else if (rest.substr(0, 8) == "https://") {
    scheme = "https://";
  } else {
    return bad("not an http:// or https:// URL");
  }
  rest.remove_prefix(scheme.size());
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path =
      slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  if (authority.empty() || authority.back() == '@') return bad("no host");
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.find_first_of("?#") != std::string_view::npos)
    return bad("query strings are not supported");
  ClickHouseUrl out;
  out.base = scheme + std::string(authority) + "/";
  out.database = path.empty() ? "default" : std::string(path);
  for (char c : out.database)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      return bad(fmt::format("'{}' is not a database name (letters, digits, _)", out.database));
  return out;
}

Result<std::unique_ptr<FrameSink>> open_clickhouse_sink(std::string_view url,
                                                        const SinkOptions& options) {
  NFM_ASSIGN(ClickHouseUrl u, parse_clickhouse_url(url));
  // The server may be down now: the sink buffers until it is up (no check here).
  return std::unique_ptr<FrameSink>(
      std::make_unique<ClickHouseSink>("clickhouse:" + std::string(url), std::move(u), options));
}

Result<std::unique_ptr<FrameStore>> open_clickhouse_store(std::string_view url) {
  NFM_ASSIGN(ClickHouseUrl u, parse_clickhouse_url(url));
  auto store = std::make_unique<ClickHouseStore>("clickhouse:" + std::string(url), std::move(u));
  NFM_TRY(store->open());
  return std::unique_ptr<FrameStore>(std::move(store));
}

std::vector<std::string> clickhouse_cluster_ddl(const std::string& database,
                                                const std::string& cluster) {
  const std::string db = "`" + database + "`", on = " ON CLUSTER `" + cluster + "`";
  std::vector<std::string> out{"CREATE DATABASE IF NOT EXISTS " + db + on};
  for (const TableDef& t : table_defs()) {
    const std::string local = fmt::format("{}.`{}_local`", db, t.name);
    out.push_back(
        fmt::format("CREATE TABLE IF NOT EXISTS {}{} ({}) ENGINE = "
                    "ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{}/{}', '{{replica}}'){}",
                    local, on, column_list(t), database, t.name, kPartitionAndOrder));
    out.push_back(fmt::format(
        "CREATE TABLE IF NOT EXISTS {}.`{}`{} AS {} ENGINE = Distributed(`{}`, {}, `{}_local`, "
        "cityHash64(vm))",
        db, t.name, on, local, cluster, db, t.name));
  }
  return out;
}

Result<void> init_clickhouse_cluster(std::string_view url, const std::string& cluster,
                                     const std::function<void(const std::string&)>& progress) {
  NFM_ASSIGN(ClickHouseUrl u, parse_clickhouse_url(url));
  if (cluster.empty() || cluster.find_first_of("`'\\ ") != std::string::npos)
    return make_error(Errc::invalid_argument, fmt::format("bad cluster name '{}'", cluster));
  Connection c(u);
  for (const std::string& sql : clickhouse_cluster_ddl(u.database, cluster)) {
    if (progress) progress(sql);
    // ON CLUSTER waits for every node (distributed_ddl_task_timeout, 180 s by default).
    if (auto r = c.run(sql, 200000); !r)
      return make_error(r.error().code, error_text(u, r.error()));
  }
  return {};
}

}  // namespace nfm
