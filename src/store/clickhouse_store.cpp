#include "store/clickhouse_store.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <set>

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

// Every table nfm writes, with its columns as CREATE TABLE lists them: `frames`, then
// one per feature (store_schema.h).
std::vector<std::pair<std::string, std::string>> table_columns() {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("frames",
                   "frame_id Int64, vm String, vm_uuid String, vm_pid Int64, host String, "
                   "time DateTime, host_time_ns UInt64, duration_ns UInt64, kernel_release "
                   "String, target String, partial UInt8, frame String");
  for (const FeatureTable& t : store::feature_tables()) {
    std::string columns =
        "frame_id Int64, vm String, host String, time DateTime, host_time_ns UInt64";
    for (const store::Column& c : t.columns) columns += ", `" + c.name + "` " + ch_type(c);
    out.emplace_back(t.name, std::move(columns));
  }
  return out;
}

// A single server's tables; a cluster's local tables are the replicated kind of it.
constexpr const char* kEngine =
    " ENGINE = MergeTree() PARTITION BY toYYYYMMDD(time) ORDER BY (vm, time)";

// A ClickHouse string literal.
std::string literal(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

// Statements and queries against one server and database.
class Connection {
 public:
  explicit Connection(ClickHouseUrl url) : url_(std::move(url)) {}
  const ClickHouseUrl& url() const { return url_; }
  std::string table(const std::string& name) const {
    return "`" + url_.database + "`.`" + name + "`";
  }

  Result<std::string> run(const std::string& sql, long timeout_ms = 30000) {
    return http_.post(url_.base + "?output_format_json_quote_64bit_integers=0", sql, timeout_ms);
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
    for (const auto& [name, columns] : table_columns())
      NFM_TRY(run("CREATE TABLE IF NOT EXISTS " + table(name) + " (" + columns + ")" + kEngine));
    for (const FeatureTable& t : store::feature_tables()) NFM_TRY(add_missing_columns(t));
    return {};
  }

  // A database written by an older nfm lacks the columns features declared since:
  // they are added (their type's default in the old rows).
  Result<void> add_missing_columns(const FeatureTable& t) {
    // Names are ours ([a-z_0-9]), so they can be quoted into the statement.
    NFM_ASSIGN(std::vector<json> have, rows("SELECT name FROM system.columns WHERE database = '" +
                                            url_.database + "' AND table = '" + t.name + "'"));
    std::set<std::string> names;
    for (const json& row : have)
      if (row.contains("name") && row["name"].is_string()) names.insert(row["name"]);
    for (const store::Column& c : t.columns)
      if (!names.contains(c.name))
        NFM_TRY(run("ALTER TABLE " + table(t.name) + " ADD COLUMN `" + c.name + "` " + ch_type(c)));
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

class ClickHouseSink final : public QueuedSink {
 public:
  ClickHouseSink(std::string spec, ClickHouseUrl url, const SinkOptions& options)
      : QueuedSink({.limit = std::max<uint64_t>(options.buffer_frames, 1),
                    .batch_max = std::clamp<size_t>(options.buffer_frames / 4, 1, 64),
                    .retry = true,
                    .flush_wait = std::chrono::seconds(10)}),
        spec_(std::move(spec)),
        connection_(std::move(url)) {
    start_writer();
  }

  ~ClickHouseSink() override { stop_writer(); }

  std::string describe() const override { return spec_; }

 private:
  // A batch on its way: rendered once, its tables sent one by one (frames last)
  // and each only once, so a retry after a partial failure adds no duplicates.
  struct Batch {
    size_t frames = 0;
    std::vector<std::pair<std::string, std::string>> tables;  // table, JSONEachRow body
    size_t sent = 0;                                          // tables delivered
  };

  Batch render(const QueuedSink::Batch& frames) {
    Batch b;
    b.frames = frames.size();
    std::map<std::string, std::string> bodies;
    std::string frame_rows;
    for (const auto& f : frames) {
      const json j = frame_json(*f);
      const FrameMeta& m = f->meta;
      const int64_t id = store::frame_key(m);
      const uint64_t seconds = m.host_time_ns / 1000000000ull;
      bool partial = false;
      for (const auto& [_, status] : m.features) partial |= status.partial();
      json row = {{"frame_id", id},
                  {"vm", m.vm.name},
                  {"vm_uuid", m.vm.uuid},
                  {"vm_pid", m.vm.pid},
                  {"host", m.vm.host},
                  {"time", seconds},
                  {"host_time_ns", m.host_time_ns},
                  {"duration_ns", m.duration_ns},
                  {"kernel_release", m.kernel.release},
                  {"target", m.target},
                  {"partial", partial ? 1 : 0},
                  {"frame", dump_json(j, -1)}};
      frame_rows += dump_json(row, -1) + "\n";
      for (const FeatureTable& t : store::feature_tables()) {
        const std::vector<const json*> rows = store::section_rows(t, j);
        if (rows.empty()) continue;
        const bool kmsg = t.name == "kmsg";
        if (kmsg) kmsg_.begin_frame(m.vm.name, j.at("kmsg"));
        std::string& body = bodies[t.name];
        for (const json* r : rows) {
          if (kmsg) {
            auto seq = r->find("seq");
            if (seq != r->end() && seq->is_number_unsigned() && !kmsg_.is_new(seq->get<uint64_t>()))
              continue;
          }
          json out = {{"frame_id", id},
                      {"vm", m.vm.name},
                      {"host", m.vm.host},
                      {"time", seconds},
                      {"host_time_ns", m.host_time_ns}};
          for (const store::Column& c : t.columns)
            out[c.name] = ch_value(c, store::column_value(c, *r));
          body += dump_json(out, -1);
          body += '\n';
        }
        if (kmsg) kmsg_.end_frame(m.vm.name);
      }
    }
    for (auto& [table, body] : bodies)
      if (!body.empty()) b.tables.emplace_back(table, std::move(body));
    b.tables.emplace_back("frames",
                          std::move(frame_rows));  // last: a frame is complete when listed
    return b;
  }

  Result<void> send(Batch& b) {
    if (!schema_ready_) {
      NFM_TRY(connection_.create_schema());
      schema_ready_ = true;
    }
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

  void forget(const std::string& vm) override { kmsg_.forget(vm); }

  std::string describe_error(const Error& e) const override {
    return error_text(connection_.url(), e);
  }

  const std::string spec_;
  Connection connection_;  // the writer thread's, like everything below
  store::KmsgDedup kmsg_;
  bool schema_ready_ = false;
  std::optional<Batch> pending_;
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

class ClickHouseStore final : public FrameStore {
 public:
  ClickHouseStore(std::string spec, ClickHouseUrl url)
      : spec_(std::move(spec)), c_(std::move(url)) {}

  Result<void> open() {
    auto r = c_.rows("SELECT count() AS n FROM system.tables WHERE database = " +
                     literal(c_.url().database) + " AND name = 'frames'");
    if (!r) return wrap(r.error());
    if (r->empty() || u64(r->front(), "n") != 1)
      return make_error(Errc::not_found, fmt::format("{}: no frames table in database {}", spec_,
                                                     c_.url().database));
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
    auto r = c_.rows(
        fmt::format("SELECT frame FROM {} WHERE frame_id = {} LIMIT 1", c_.table("frames"), id));
    if (!r) return wrap(r.error());
    if (r->empty()) return make_error(Errc::not_found, fmt::format("{}: no frame {}", spec_, id));
    return parse(str(r->front(), "frame"), id);
  }

  Result<std::vector<Frame>> latest() override {
    std::lock_guard lock(mutex_);
    auto r =
        c_.rows(fmt::format("SELECT frame_id, frame FROM {0} WHERE (vm, host, host_time_ns) IN "
                            "(SELECT vm, host, max(host_time_ns) FROM {0} GROUP BY vm, host) "
                            "ORDER BY vm, host LIMIT 1 BY vm, host",
                            c_.table("frames")));
    if (!r) return wrap(r.error());
    std::vector<Frame> out;
    for (const json& row : *r) {
      NFM_ASSIGN(Frame f, parse(str(row, "frame"), i64(row, "frame_id")));
      out.push_back(std::move(f));
    }
    return out;
  }

 private:
  Error wrap(const Error& e) const { return make_error(e.code, spec_ + ": " + e.message); }

  Result<Frame> parse(const std::string& text, int64_t id) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded())
      return make_error(Errc::bad_format, fmt::format("{}: frame {} is not JSON", spec_, id));
    Result<Frame> f = frame_from_json(j);
    if (!f)
      return make_error(f.error().code,
                        fmt::format("{}: frame {}: {}", spec_, id, f.error().message));
    return f;
  }

  const std::string spec_;
  std::mutex mutex_;
  Connection c_;
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
  for (const auto& [name, columns] : table_columns()) {
    const std::string local = fmt::format("{}.`{}_local`", db, name);
    out.push_back(
        fmt::format("CREATE TABLE IF NOT EXISTS {}{} ({}) ENGINE = "
                    "ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{}/{}', '{{replica}}') "
                    "PARTITION BY toYYYYMMDD(time) ORDER BY (vm, time)",
                    local, on, columns, database, name));
    out.push_back(fmt::format(
        "CREATE TABLE IF NOT EXISTS {}.`{}`{} AS {} ENGINE = Distributed(`{}`, {}, `{}_local`, "
        "cityHash64(vm))",
        db, name, on, local, cluster, db, name));
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
