// The stores with real frames and real servers: frames crawled in-process from
// two live guests go to SQLite, ClickHouse and the Prometheus exporter at once;
// both stores give back exactly what was written; a ClickHouse server killed
// mid-run and started again loses nothing (the sink buffers, then drains); and a
// real Prometheus server scraping the exporter reports the frame's numbers. Before
// those, ClickHouse's row versions with made-up frames (no guest): rows stored once
// per version, the state and history queries of docs/stores.md, duplicates, a
// restarted writer, a new day, and frames of the first schema.
// Every server is this program's own (free loopback ports, temporary data dirs).
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>
#include <set>

#include "features/interfaces/rows.h"
#include "features/kmsg/rows.h"
#include "features/meminfo/rows.h"
#include "features/processes/rows.h"
#include "features/sockets/rows.h"
#include "features/uname/rows.h"
#include "fixture.h"
#include "frame/frame_crawler.h"
#include "frame/frame_json.h"
#include "host/target.h"
#include "kernel/kernel.h"
#include "store/frame_sink.h"
#include "store/frame_store.h"
#include "store/prometheus_exporter.h"
#include "store_servers.h"

namespace {

using json = nlohmann::json;
using nfm::Frame;
using nfm::testing::ClickHouse;
using nfm::testing::Prometheus;
using nfm::testing::TempDir;

const int kGuests = nfm::lab::declare_guests(
    {{.kernel = "5.10", .ram_mib = 384}, {.kernel = "6.1-cloud", .ram_mib = 384}});

// One live guest, attached in-process, crawled on demand.
struct Crawled {
  std::unique_ptr<nfm::Kernel> kernel;
  std::unique_ptr<nfm::FrameCrawler> crawler;
  nfm::VmIdentity vm;
  Frame crawl() {
    Frame f = crawler->crawl();
    f.meta.vm = vm;
    return f;
  }
};

std::unique_ptr<Crawled> attach(nfm::lab::Guest* g) {
  auto memory = nfm::open_target("qemu:" + std::to_string(g->pid()));
  EXPECT_TRUE(memory.ok()) << memory.error().to_string();
  if (!memory) return nullptr;
  auto kernel = nfm::Kernel::attach(std::move(*memory));
  EXPECT_TRUE(kernel.ok()) << kernel.error().to_string();
  if (!kernel) return nullptr;
  auto c = std::make_unique<Crawled>();
  c->kernel = std::move(*kernel);
  c->crawler = std::make_unique<nfm::FrameCrawler>(*c->kernel);
  c->vm = {g->name(), "", g->pid(), "nfm-test-host"};
  return c;
}

// What a store must give back: the frame's JSON as text carries it.
json stored_form(const Frame& f) {
  return json::parse(nfm::dump_json(nfm::frame_json(f), -1));
}

// ---------------------------------------------------------------------------
// ClickHouse's row versions, with made-up frames.

constexpr uint64_t kSecond = 1'000'000'000;
// 2023-11-14 22:13:20 UTC: the frames below stay in that day but the last.
constexpr uint64_t kT0 = 1'700'000'000 * kSecond;

nfm::ProcessRow process(int pid, const std::string& comm, uint64_t rss_kb) {
  nfm::ProcessRow p;
  p.pid = pid;
  p.tgid = pid;
  p.ppid = 1;
  p.comm = comm;
  p.state = 'S';
  p.cmdline = {"/bin/" + comm, "--flag", ""};
  p.rss_kb = rss_kb;
  p.cpu_pct = 12.34;
  return p;
}

nfm::KmsgRecord record(uint64_t seq, const std::string& text) {
  nfm::KmsgRecord r;
  r.seq = seq;
  r.ts_ns = 1000 * seq;
  r.level = 6;
  r.caller_id = 0x80000001;
  r.text = text;
  if (seq == 2) r.subsystem = "pci";  // an optional key, set in one record only
  return r;
}

Frame made_up_frame(const std::string& vm, uint64_t time_ns, std::vector<nfm::ProcessRow> ps,
                    std::vector<nfm::KmsgRecord> log) {
  Frame f;
  f.meta.vm = {vm, "0f8fad5b-d9cb-469f-a165-70867728950e", 4242, "hv1"};
  f.meta.target = "qemu:4242";
  f.meta.kernel.release = "6.1.0-18-cloud-amd64";
  f.meta.host_time_ns = time_ns;
  f.meta.duration_ns = 12345;
  nfm::FeatureStatus ok{.ok = true, .walk = "complete", .rows = ps.size()};
  for (const char* name : {"uname", "meminfo", "processes", "kmsg"})
    f.meta.features[nfm::Feature::named(name)] = ok;
  f.set(nfm::UnameInfo{"Linux", vm, "6.1.0", "#1 SMP", "x86_64", "(none)"});
  f.set(nfm::MemInfo{1000, 200, 500, 4, 5, 0, 0});
  f.set(nfm::ProcessList{});
  f.get<nfm::ProcessList>()->rows = std::move(ps);
  f.set(nfm::KmsgLog{});
  f.get<nfm::KmsgLog>()->records = std::move(log);
  return f;
}

// A query's rows as "a|b|c" (TabSeparated, tabs made bars).
std::vector<std::string> ch_rows(ClickHouse& ch, const std::string& sql) {
  auto r = ch.query(sql + " FORMAT TabSeparated");
  EXPECT_TRUE(r.ok()) << sql << ": " << r.error().message;
  std::vector<std::string> out;
  if (!r) return out;
  std::string line;
  for (char c : *r) {
    if (c == '\n') {
      out.push_back(line);
      line.clear();
    } else {
      line += c == '\t' ? '|' : c;
    }
  }
  return out;
}

// Every frame `written` reads back exactly from the store at `spec`, in order.
void expect_frames(const std::string& spec, const std::string& vm,
                   const std::vector<Frame>& written) {
  auto store = nfm::open_store(spec);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto refs = (*store)->frames(vm, 0, UINT64_MAX, 1000);
  ASSERT_TRUE(refs.ok()) << refs.error().message;
  ASSERT_EQ(refs->size(), written.size());
  for (size_t i = 0; i < written.size(); ++i) {
    auto f = (*store)->load((*refs)[i].id);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(nfm::dump_json(nfm::frame_json(*f)), nfm::dump_json(stored_form(written[i])))
        << "frame " << i;
  }
}

// The state query of docs/stores.md at frame F: pid|rss_kb of processes, sorted.
std::vector<std::string> state_at_frame(ClickHouse& ch, const std::string& db,
                                        const std::string& vm, const std::string& frame_id) {
  return ch_rows(ch, fmt::format("SELECT pid, rss_kb FROM {0}.processes WHERE vm = '{1}' AND "
                                 "session = intDiv({2}, 4294967296) AND frame_id <= {2} AND "
                                 "row_id NOT IN (SELECT row_id FROM {0}.row_ends WHERE vm = '{1}' "
                                 "AND until_frame_id <= {2}) ORDER BY pid LIMIT 1 BY row_id",
                                 db, vm, frame_id));
}

// ... and at time T.
std::vector<std::string> state_at_time(ClickHouse& ch, const std::string& db, const std::string& vm,
                                       uint64_t t) {
  return ch_rows(
      ch, fmt::format("SELECT pid, rss_kb FROM {0}.processes WHERE vm = '{1}' AND "
                      "session = (SELECT argMax(session, host_time_ns) FROM {0}.frames WHERE "
                      "vm = '{1}' AND host_time_ns <= {2}) AND host_time_ns <= {2} AND row_id NOT "
                      "IN (SELECT row_id FROM {0}.row_ends WHERE vm = '{1}' AND until_ns <= {2}) "
                      "ORDER BY pid LIMIT 1 BY row_id",
                      db, vm, t));
}

std::unique_ptr<nfm::FrameSink> open_ok(const std::string& spec) {
  auto sink = nfm::open_sink(spec);
  EXPECT_TRUE(sink.ok()) << sink.error().message;
  return sink ? std::move(*sink) : nullptr;
}

TEST(ClickHouseVersions, RowsOncePerVersionStateAndHistoryQueriesRestartsAndDuplicates) {
  TempDir dir;
  ClickHouse ch(dir.sub("clickhouse"));
  ASSERT_TRUE(ch.start()) << ch.log();
  const std::string db = "nfm_versions", spec = "clickhouse:" + ch.url() + db;
  const nfm::ProcessRow p = process(7, "we\"ird\\na\nme", 2048), k = process(2, "kthreadd", 0);
  nfm::ProcessRow p_grown = p;
  p_grown.rss_kb = 4096;
  const std::vector<nfm::KmsgRecord> log2 = {record(1, "one"), record(2, "two")};
  std::vector<nfm::KmsgRecord> log3 = log2;
  log3.push_back(record(3, "three"));
  constexpr int kSame = 20;  // frames like the fourth

  // 1: p, k   2: p grew   3: p is gone   4: k, p back (as grown), k again; then kSame
  // more frames like 4; one VM more (its rows are its own).
  std::vector<Frame> written;
  written.push_back(made_up_frame("vm-a", kT0 + 1 * kSecond, {p, k}, log2));
  written.push_back(made_up_frame("vm-a", kT0 + 2 * kSecond, {p_grown, k}, log3));
  written.push_back(made_up_frame("vm-a", kT0 + 3 * kSecond, {k}, log3));
  for (int i = 0; i <= kSame; ++i)
    written.push_back(made_up_frame("vm-a", kT0 + (4 + i) * kSecond, {k, p_grown, k}, log3));
  const Frame other = made_up_frame("vm-b", kT0 + 1 * kSecond, {p, k}, log2);
  {
    auto sink = open_ok(spec);
    ASSERT_TRUE(sink);
    for (const Frame& f : written) sink->write(f);
    sink->write(other);
    sink->flush();
    EXPECT_EQ(sink->stats().frames_written, written.size() + 1) << sink->stats().last_error;
    EXPECT_EQ(sink->stats().write_errors, 0u) << sink->stats().last_error;
  }
  // Each version once: p, k, p grown, p grown again after its absence.
  EXPECT_EQ(ch_rows(ch, "SELECT pid, rss_kb, count() FROM " + db +
                            ".processes WHERE vm = 'vm-a' GROUP BY row_id, pid, rss_kb ORDER BY "
                            "row_id"),
            (std::vector<std::string>{"7|2048|1", "2|0|1", "7|4096|1", "7|4096|1"}));
  EXPECT_EQ(ch_rows(ch, "SELECT count() FROM " + db + ".meminfo WHERE vm = 'vm-a'"),
            std::vector<std::string>{"1"});
  EXPECT_EQ(ch_rows(ch, "SELECT count() FROM " + db + ".uname WHERE vm = 'vm-a'"),
            std::vector<std::string>{"1"});
  // The kernel log: each record once, as in SQLite.
  EXPECT_EQ(ch_rows(ch, "SELECT seq, text, subsystem FROM " + db +
                            ".kmsg WHERE vm = 'vm-a' ORDER BY seq"),
            (std::vector<std::string>{"1|one|", "2|two|pci", "3|three|"}));
  // The frame's own JSON is its meta; its rows are the tables'.
  EXPECT_EQ(ch_rows(ch, "SELECT count() FROM " + db +
                            ".frames WHERE position(frame, 'kthreadd') > 0 OR "
                            "position(frame, '\"processes\":[') > 0"),
            std::vector<std::string>{"0"});
  expect_frames(spec, "vm-a", written);
  expect_frames(spec, "vm-b", {other});

  // The state at frame F and at time T, as docs/stores.md writes them.
  const std::vector<std::string> ids =
      ch_rows(ch, "SELECT frame_id FROM " + db + ".frames WHERE vm = 'vm-a' ORDER BY host_time_ns");
  ASSERT_EQ(ids.size(), written.size());
  EXPECT_EQ(state_at_frame(ch, db, "vm-a", ids[0]), (std::vector<std::string>{"2|0", "7|2048"}));
  EXPECT_EQ(state_at_frame(ch, db, "vm-a", ids[1]), (std::vector<std::string>{"2|0", "7|4096"}));
  EXPECT_EQ(state_at_frame(ch, db, "vm-a", ids[2]), (std::vector<std::string>{"2|0"}));
  EXPECT_EQ(state_at_frame(ch, db, "vm-a", ids.back()),
            (std::vector<std::string>{"2|0", "7|4096"}));
  EXPECT_EQ(state_at_time(ch, db, "vm-a", kT0 + 2 * kSecond + kSecond / 2),
            (std::vector<std::string>{"2|0", "7|4096"}));
  EXPECT_EQ(state_at_time(ch, db, "vm-a", kT0 + 3 * kSecond), (std::vector<std::string>{"2|0"}));
  // The history of pid 7: each version with when it held (0: still open).
  const std::string history = fmt::format(
      "SELECT host_time_ns, until_ns, rss_kb FROM {0}.processes ANY LEFT JOIN (SELECT vm, "
      "row_id, until_ns FROM {0}.row_ends WHERE vm = 'vm-a') USING (vm, row_id) WHERE vm = "
      "'vm-a' AND pid = 7 ORDER BY host_time_ns LIMIT 1 BY row_id",
      db);
  EXPECT_EQ(
      ch_rows(ch, history),
      (std::vector<std::string>{fmt::format("{}|{}|2048", kT0 + kSecond, kT0 + 2 * kSecond),
                                fmt::format("{}|{}|4096", kT0 + 2 * kSecond, kT0 + 3 * kSecond),
                                fmt::format("{}|0|4096", kT0 + 4 * kSecond)}));

  // Inserts that landed twice (a retried batch whose answer was lost) change nothing.
  for (const char* table : {"processes", "row_ends", "frames", "kmsg"})
    ASSERT_TRUE(ch.query(fmt::format("INSERT INTO {0}.{1} SELECT * FROM {0}.{1}", db, table)).ok());
  expect_frames(spec, "vm-a", written);
  EXPECT_EQ(state_at_frame(ch, db, "vm-a", ids[1]), (std::vector<std::string>{"2|0", "7|4096"}));
  EXPECT_EQ(ch_rows(ch, history).size(), 3u);

  // A restarted writer (a new session): the versions its predecessor left open end
  // after that session's last frame of the VM, and the new frame's rows are its own.
  const uint64_t restart_ns = kT0 + 100 * kSecond;
  {
    auto sink = open_ok(spec);
    ASSERT_TRUE(sink);
    written.push_back(made_up_frame("vm-a", restart_ns, {k}, log3));
    sink->write(written.back());
    sink->flush();
    EXPECT_EQ(sink->stats().write_errors, 0u) << sink->stats().last_error;
  }
  EXPECT_EQ(ch_rows(ch, fmt::format("SELECT DISTINCT pid, rss_kb FROM {0}.processes WHERE vm = "
                                    "'vm-a' AND row_id NOT IN (SELECT row_id FROM {0}.row_ends "
                                    "WHERE vm = 'vm-a') ORDER BY pid",
                                    db)),
            std::vector<std::string>{"2|0"});
  EXPECT_EQ(ch_rows(ch, history).back(),
            fmt::format("{}|{}|4096", kT0 + 4 * kSecond, kT0 + (4 + kSame) * kSecond + 1));
  EXPECT_EQ(state_at_time(ch, db, "vm-a", restart_ns), std::vector<std::string>{"2|0"});
  EXPECT_EQ(state_at_frame(ch, db, "vm-a", ids.back()),
            (std::vector<std::string>{"2|0", "7|4096"}));
  // A new day: its first frame writes every row anew (a reader looks in one day).
  const uint64_t next_day = (kT0 / kSecond / 86400 + 1) * 86400 * kSecond + kSecond;
  {
    auto sink = open_ok(spec);
    ASSERT_TRUE(sink);
    written.push_back(made_up_frame("vm-a", next_day - 2 * kSecond, {k, p}, log3));
    written.push_back(made_up_frame("vm-a", next_day, {k, p}, log3));
    for (size_t i = written.size() - 2; i < written.size(); ++i) sink->write(written[i]);
    sink->flush();
    EXPECT_EQ(sink->stats().write_errors, 0u) << sink->stats().last_error;
  }
  EXPECT_EQ(ch_rows(ch, fmt::format("SELECT count() FROM {}.processes WHERE vm = 'vm-a' AND "
                                    "host_time_ns >= {}",
                                    db, next_day - 2 * kSecond)),
            std::vector<std::string>{"4"});
  expect_frames(spec, "vm-a", written);
  auto store = nfm::open_store(spec);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto latest = (*store)->latest();
  ASSERT_TRUE(latest.ok()) << latest.error().message;
  ASSERT_EQ(latest->size(), 2u);
  EXPECT_EQ(nfm::frame_json((*latest)[0]), stored_form(written.back()));
  EXPECT_EQ(nfm::frame_json((*latest)[1]), stored_form(other));
}

// A database an nfm of the first schema wrote (every frame's rows and its whole JSON,
// no sections): the sink adds its columns, and both kinds of frames read back.
TEST(ClickHouseVersions, FramesOfTheFirstSchemaStayReadable) {
  TempDir dir;
  ClickHouse ch(dir.sub("clickhouse"));
  ASSERT_TRUE(ch.start()) << ch.log();
  const std::string db = "nfm_old", spec = "clickhouse:" + ch.url() + db;
  const Frame old_frame =
      made_up_frame("vm-a", kT0, {process(7, "x", 1), process(2, "kthreadd", 0)}, {});
  ASSERT_TRUE(ch.query("CREATE DATABASE " + db).ok());
  const std::string engine =
      " ENGINE = MergeTree() PARTITION BY toYYYYMMDD(time) ORDER BY (vm, time)";
  ASSERT_TRUE(ch.query("CREATE TABLE " + db +
                       ".frames (frame_id Int64, vm String, vm_uuid String, vm_pid Int64, host "
                       "String, time DateTime, host_time_ns UInt64, duration_ns UInt64, "
                       "kernel_release String, target String, partial UInt8, frame String)" +
                       engine)
                  .ok());
  ASSERT_TRUE(ch.query("CREATE TABLE " + db +
                       ".processes (frame_id Int64, vm String, host String, time DateTime, "
                       "host_time_ns UInt64, pid Int64, comm String)" +
                       engine)
                  .ok());
  const json row = {{"frame_id", 12345},
                    {"vm", "vm-a"},
                    {"vm_uuid", "u"},
                    {"vm_pid", 4242},
                    {"host", "hv1"},
                    {"time", kT0 / kSecond},
                    {"host_time_ns", kT0},
                    {"duration_ns", 1},
                    {"kernel_release", "6.1"},
                    {"target", "qemu:4242"},
                    {"partial", 0},
                    {"frame", nfm::dump_json(nfm::frame_json(old_frame), -1)}};
  ASSERT_TRUE(ch.query("INSERT INTO " + db + ".frames FORMAT JSONEachRow " + row.dump()).ok());
  ASSERT_TRUE(ch.query("INSERT INTO " + db +
                       ".processes VALUES (12345, 'vm-a', 'hv1', 1700000000, 1700000000000000000, "
                       "7, 'x'), (12345, 'vm-a', 'hv1', 1700000000, 1700000000000000000, 2, "
                       "'kthreadd')")
                  .ok());
  // Read as it is, before any new nfm wrote to it.
  expect_frames(spec, "vm-a", {old_frame});
  std::vector<Frame> written{old_frame,
                             made_up_frame("vm-a", kT0 + kSecond, {process(2, "kthreadd", 0)}, {})};
  {
    auto sink = open_ok(spec);
    ASSERT_TRUE(sink);
    sink->write(written.back());
    sink->flush();
    EXPECT_EQ(sink->stats().write_errors, 0u) << sink->stats().last_error;
  }
  expect_frames(spec, "vm-a", written);
  // The old rows (session 0) are in no new frame's state.
  EXPECT_EQ(state_at_time(ch, db, "vm-a", kT0 + kSecond), std::vector<std::string>{"2|0"});
}

class RoundTrip : public testing::TestWithParam<std::string> {};

TEST_P(RoundTrip, RealFramesComeBackTyped) {
  NFM_LAB_GUEST(g, GetParam());
  auto c = attach(g);
  ASSERT_TRUE(c);
  const Frame f = c->crawl();
  const json j = nfm::frame_json(f);
  for (nfm::Feature feature : nfm::default_features())
    EXPECT_TRUE(j.contains(std::string(nfm::feature_name(feature)))) << nfm::feature_name(feature);
  auto back = nfm::frame_from_json(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(nfm::frame_json(*back), j);
  auto from_text = nfm::frame_from_json(stored_form(f));
  ASSERT_TRUE(from_text.ok()) << from_text.error().message;
  EXPECT_EQ(nfm::frame_json(*from_text), stored_form(f));
  EXPECT_EQ(back->get<nfm::ProcessList>()->rows.size(), f.get<nfm::ProcessList>()->rows.size());
  EXPECT_EQ(back->meta.kernel.release, g->kernel_release());
}

INSTANTIATE_TEST_SUITE_P(Guests, RoundTrip, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

// Every frame of `written` (per VM name) is in `store`, equal to what was written.
void expect_store_holds(nfm::FrameStore& store,
                        const std::map<std::string, std::vector<Frame>>& written) {
  SCOPED_TRACE(store.describe());
  auto vms = store.vms();
  ASSERT_TRUE(vms.ok()) << vms.error().message;
  ASSERT_EQ(vms->size(), written.size());
  for (const nfm::StoredVm& v : *vms) {
    ASSERT_TRUE(written.count(v.vm.name)) << v.vm.name;
    const std::vector<Frame>& frames = written.at(v.vm.name);
    EXPECT_EQ(v.frames, frames.size());
    EXPECT_EQ(v.vm.pid, frames.back().meta.vm.pid);
    EXPECT_EQ(v.vm.host, "nfm-test-host");
    EXPECT_EQ(v.first_ns, frames.front().meta.host_time_ns);
    EXPECT_EQ(v.last_ns, frames.back().meta.host_time_ns);
    auto refs = store.frames(v.vm.name, 0, UINT64_MAX, 1000);
    ASSERT_TRUE(refs.ok()) << refs.error().message;
    ASSERT_EQ(refs->size(), frames.size());
    for (size_t i = 0; i < frames.size(); ++i) {
      EXPECT_EQ((*refs)[i].host_time_ns, frames[i].meta.host_time_ns);
      auto loaded = store.load((*refs)[i].id);
      ASSERT_TRUE(loaded.ok()) << loaded.error().message;
      EXPECT_TRUE(nfm::frame_json(*loaded) == stored_form(frames[i]))
          << v.vm.name << " frame " << i;
    }
  }
  auto latest = store.latest();
  ASSERT_TRUE(latest.ok()) << latest.error().message;
  ASSERT_EQ(latest->size(), written.size());
  for (const Frame& f : *latest)
    EXPECT_TRUE(nfm::frame_json(f) == stored_form(written.at(f.meta.vm.name).back()))
        << f.meta.vm.name;
}

std::string sqlite_value(const std::string& path, const std::string& query) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  std::string out = "(error)";
  if (sqlite3_prepare_v2(db, query.c_str(), -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW)
    if (const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) out = t;
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

TEST(Stores, FramesOfTwoGuestsReachEveryStoreAndSurviveAClickHouseRestart) {
  std::vector<std::unique_ptr<Crawled>> guests;
  for (const std::string& key : nfm::lab::declared_guests()) {
    NFM_LAB_GUEST(g, key);
    guests.push_back(attach(g));
    ASSERT_TRUE(guests.back());
  }
  TempDir dir;
  ClickHouse clickhouse(dir.sub("clickhouse"));
  ASSERT_TRUE(clickhouse.start()) << clickhouse.log();
  const std::string sqlite_path = dir.sub("sqlite") + "/frames.db";
  const std::string clickhouse_spec = "clickhouse:" + clickhouse.url() + "nfm_test";
  // A processes table as an older nfm made it, with fewer columns: the sink adds the
  // columns declared since (else every insert would fail).
  ASSERT_TRUE(clickhouse.query("CREATE DATABASE nfm_test").ok());
  auto old_table = clickhouse.query(
      "CREATE TABLE nfm_test.processes (frame_id Int64, vm String, host String, time DateTime, "
      "host_time_ns UInt64, pid Int64, comm String) "
      "ENGINE = MergeTree() PARTITION BY toYYYYMMDD(time) ORDER BY (vm, time)");
  ASSERT_TRUE(old_table.ok()) << old_table.error().message;

  std::vector<std::unique_ptr<nfm::FrameSink>> sinks;
  for (const std::string& spec :
       {"sqlite:" + sqlite_path, clickhouse_spec, std::string("prometheus:0")}) {
    auto sink = nfm::open_sink(spec);
    ASSERT_TRUE(sink.ok()) << sink.error().message;
    EXPECT_EQ((*sink)->describe(), spec);
    sinks.push_back(std::move(*sink));
  }
  nfm::FrameSink& sqlite = *sinks[0];
  nfm::FrameSink& ch = *sinks[1];
  auto& exporter = dynamic_cast<nfm::PrometheusExporter&>(*sinks[2]);

  std::map<std::string, std::vector<Frame>> written;
  auto crawl_round = [&] {
    for (auto& c : guests) {
      Frame f = c->crawl();
      for (auto& sink : sinks) sink->write(f);
      written[c->vm.name].push_back(std::move(f));
    }
  };
  crawl_round();
  crawl_round();
  for (auto& sink : sinks) sink->flush();
  EXPECT_EQ(ch.stats().frames_written, 4u) << ch.stats().last_error;
  EXPECT_EQ(ch.stats().frames_buffered, 0u);
  auto euids = clickhouse.query("SELECT count() FROM nfm_test.processes WHERE euid = 0");
  ASSERT_TRUE(euids.ok()) << euids.error().message;
  EXPECT_NE(euids->substr(0, euids->find('\n')), "0") << "no root process has euid 0";

  // The server goes away mid-run; frames keep coming.
  clickhouse.kill();
  crawl_round();
  crawl_round();
  ch.flush();  // gives up after a while: nobody answers
  nfm::SinkStats down = ch.stats();
  EXPECT_EQ(down.frames_written, 4u);
  EXPECT_EQ(down.frames_buffered, 4u);
  EXPECT_EQ(down.frames_dropped, 0u);
  EXPECT_GT(down.write_errors, 0u);
  EXPECT_THAT(down.last_error, testing::HasSubstr(clickhouse.url()));
  // Back up, on its old data: the buffer drains.
  ASSERT_TRUE(clickhouse.start()) << clickhouse.log();
  ch.flush();
  nfm::SinkStats up = ch.stats();
  EXPECT_EQ(up.frames_written, 8u) << up.last_error;
  EXPECT_EQ(up.frames_buffered, 0u);
  EXPECT_EQ(up.frames_dropped, 0u);
  sqlite.flush();
  EXPECT_EQ(sqlite.stats().frames_written, 8u) << sqlite.stats().last_error;

  // Both stores give back every frame of both VMs, as written.
  auto sqlite_store = nfm::open_store("sqlite:" + sqlite_path);
  ASSERT_TRUE(sqlite_store.ok()) << sqlite_store.error().message;
  expect_store_holds(**sqlite_store, written);
  auto ch_store = nfm::open_store(clickhouse_spec);
  ASSERT_TRUE(ch_store.ok()) << ch_store.error().message;
  expect_store_holds(**ch_store, written);

  // The feature tables hold the frame's rows as real columns, in both.
  for (const auto& [vm, frames] : written) {
    const Frame& last = frames.back();
    const nfm::ProcessRow* big = nullptr;
    for (const nfm::ProcessRow& p : last.get<nfm::ProcessList>()->rows)
      if (p.comm == "nfm-bigalloc") big = &p;
    ASSERT_TRUE(big) << vm;
    EXPECT_EQ(
        sqlite_value(
            sqlite_path,
            // SQLite holds row versions: the rows a frame F shows are those with
            // frame_id <= F < until_frame_id (docs/stores.md).
            fmt::format("SELECT p.rss_kb FROM processes p JOIN frames f ON p.vm = f.vm AND "
                        "p.frame_id <= f.id AND (p.until_frame_id IS NULL OR p.until_frame_id > "
                        "f.id) WHERE f.vm = '{}' AND f.host_time_ns = {} AND "
                        "p.comm = 'nfm-bigalloc'",
                        vm, last.meta.host_time_ns)),
        std::to_string(big->rss_kb));
    // ClickHouse holds row versions too: the state at time T (docs/stores.md) is the
    // versions of T's writer session begun by T and not ended by T.
    const std::string state = fmt::format(
        "vm = '{0}' AND session = (SELECT argMax(session, host_time_ns) FROM nfm_test.frames "
        "WHERE vm = '{0}' AND host_time_ns <= {1}) AND host_time_ns <= {1} AND row_id NOT IN "
        "(SELECT row_id FROM nfm_test.row_ends WHERE vm = '{0}' AND until_ns <= {1})",
        vm, last.meta.host_time_ns);
    auto rss =
        clickhouse.query(fmt::format("SELECT rss_kb FROM nfm_test.processes WHERE {} AND comm = "
                                     "'nfm-bigalloc' LIMIT 1 BY row_id",
                                     state));
    ASSERT_TRUE(rss.ok()) << rss.error().message;
    EXPECT_EQ(*rss, std::to_string(big->rss_kb) + "\n");
    std::set<std::string> distinct_sockets;  // rows with the same values are one version
    const json last_json = stored_form(last);
    for (const json& s : last_json.at("sockets")) distinct_sockets.insert(s.dump());
    auto sockets = clickhouse.query(fmt::format(
        "SELECT count() FROM (SELECT row_id FROM nfm_test.sockets WHERE {} LIMIT 1 BY row_id)",
        state));
    ASSERT_TRUE(sockets.ok());
    EXPECT_EQ(*sockets, std::to_string(distinct_sockets.size()) + "\n");
    EXPECT_GT(distinct_sockets.size(), 1u);
  }

  // A real Prometheus scrapes the exporter and sees the newest frames' numbers.
  Prometheus prometheus(dir.sub("prometheus"), exporter.port());
  ASSERT_TRUE(prometheus.start());
  for (const auto& [vm, frames] : written) {
    const Frame& last = frames.back();
    for (const nfm::ProcessRow& p : last.get<nfm::ProcessList>()->rows) {
      if (p.comm != "nfm-bigalloc") continue;
      const std::string labels = fmt::format("vm=\"{}\",pid=\"{}\"", vm, p.pid);
      auto rss = prometheus.value("nfm_process_resident_memory_bytes{" + labels + "}");
      ASSERT_TRUE(rss) << "Prometheus never reported it\n" << prometheus.log();
      EXPECT_EQ(*rss, p.rss_kb * 1024.0);
      auto cpu = prometheus.value("nfm_process_cpu_seconds_total{" + labels + "}");
      ASSERT_TRUE(cpu);
      EXPECT_DOUBLE_EQ(*cpu, (p.utime_ns + p.stime_ns) / 1e9);
    }
    auto frames_total = prometheus.value(fmt::format("nfm_frames_total{{vm=\"{}\"}}", vm));
    ASSERT_TRUE(frames_total);
    EXPECT_EQ(*frames_total, frames.size());
    size_t listening = 0;
    for (const nfm::SocketRow& s : last.get<nfm::SocketList>()->rows)
      listening += s.proto == "tcp" && s.state == "LISTEN";
    auto listen = prometheus.value(
        fmt::format("nfm_sockets{{vm=\"{}\",proto=\"tcp\",state=\"LISTEN\"}}", vm));
    ASSERT_TRUE(listen);
    EXPECT_EQ(*listen, listening);
    for (const nfm::InterfaceRow& i : last.get<nfm::InterfaceList>()->rows) {
      if (i.name != "eth0") continue;
      auto rx = prometheus.value(
          fmt::format("nfm_interface_receive_bytes_total{{vm=\"{}\",interface=\"eth0\"}}", vm));
      ASSERT_TRUE(rx);
      EXPECT_EQ(*rx, static_cast<double>(i.stats.rx_bytes));
    }
  }
}

}  // namespace
