// The stores without guests: frame_from_json against hand-made frames (every
// section, every optional key) and broken ones; the SQLite store written and read
// back, queried with plain SQL and trimmed by retention; the Prometheus exporter's
// text and its escaping, served over HTTP. (ClickHouse and real frames:
// tests/guest/test_stores.cpp.)
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "features/cpuinfo/rows.h"
#include "features/interfaces/rows.h"
#include "features/kmsg/rows.h"
#include "features/meminfo/rows.h"
#include "features/memory_maps/rows.h"
#include "features/modules/rows.h"
#include "features/open_files/rows.h"
#include "features/processes/rows.h"
#include "features/sockets/rows.h"
#include "features/uname/rows.h"
#include "features/uptime/rows.h"
#include "frame/frame_json.h"
#include "store/clickhouse_store.h"
#include "store/http_client.h"
#include "store/prometheus_exporter.h"
#include "store/queued_sink.h"
#include "store/sqlite_store.h"
#include "store/store_schema.h"

namespace nfm {
namespace {

using json = nlohmann::json;
using testing::HasSubstr;

Frame sample_frame(const std::string& vm, uint64_t time_ns) {
  Frame f;
  FrameMeta& m = f.meta;
  m.vm = {vm, "0f8fad5b-d9cb-469f-a165-70867728950e", 4242, "hv1"};
  m.target = "qemu:4242";
  m.kernel = {"6.1.0-18-cloud-amd64", "Linux version 6.1.0", "build-1",
              "guest kallsyms",       "guest BTF",           ""};
  m.host_time_ns = time_ns;
  m.duration_ns = 12345678;
  m.cost = {1, 2, 3, 4, 5, 6, 7, 8};
  FeatureStatus ok{.ok = true, .walk = "complete", .rows = 2, .duration_ns = 99};
  FeatureStatus bad{.ok = false, .error = "no BTF for it", .duration_ns = 1};
  FeatureStatus torn{.ok = true,
                     .walk = "torn",
                     .errors = {{"row_errors", 3}},
                     .skipped = {{"kernel_threads", 2}},
                     .rows = 1};
  for (Feature ft : all_features()) m.features[ft] = ok;
  m.features[Feature::named("kmsg")] = torn;
  m.features[Feature::named("memory_maps")] = bad;
  f.set(UnameInfo{"Linux", "nfm-guest", "6.1.0", "#1 SMP", "x86_64", "nfm.test"});
  f.set(UptimeInfo{123456789012, {12, 34, 150}, 4295000000ull, 1700000000});
  f.set(CpuList{std::vector<CpuRow>{
      {0, "GenuineIntel", 6, 85, 7, "QEMU Virtual CPU", 2399999, 16384, {"fpu", "vme"}},
      {1, "unknown", 0, 0, 0, "unknown", 0, -1, {}}}});
  f.set(MemInfo{1, 2, 3, 4, 5, 6, 7});
  ProcessRow p;
  p.pid = 7;
  p.tgid = 7;
  p.ppid = 1;
  p.comm = "we\"ird\\na\nme";
  p.state = 'S';
  p.uid = 1000;
  p.gid = 1001;
  p.cmdline = {"/bin/x", "--flag", ""};
  p.exe = "/bin/x";
  p.threads = 3;
  p.nice = -5;
  p.prio = 15;
  p.utime_ns = 1500000000;
  p.stime_ns = 250000000;
  p.cpu_pct = 12.34;
  p.rss_kb = 2048;
  p.rss_anon_kb = 1024;
  p.rss_file_kb = 1000;
  p.rss_shmem_kb = 24;
  p.vsz_kb = 10000;
  p.start_time_ns = 555;
  ProcessRow k;
  k.pid = 2;
  k.comm = "kthreadd";
  k.state = 'I';
  f.set(ProcessList{});
  f.get<ProcessList>()->rows = {p, k};
  ModuleRow mod{"virtio_net", 65536, 0, "Live", 0xffffffffc0200000ull, {"a", "b"}, true, "OE", 0};
  ModuleRow mod2{"dummy", 4096, -1, "Loading", 0xffffffffc0300000ull, {}, false, "", 0};
  f.set(ModuleList{});
  f.get<ModuleList>()->rows = {mod, mod2};
  KmsgRecord r1;
  r1.seq = 10;
  r1.ts_ns = 1000;
  r1.level = 6;
  r1.caller_id = 0x80000001;
  r1.text = "line one";
  KmsgRecord r2 = r1;
  r2.seq = 11;
  r2.caller_id = 123;
  r2.facility = 3;
  r2.subsystem = "pci";
  r2.device = "+pci:0000:00:01.0";
  f.set(KmsgLog{});
  f.get<KmsgLog>()->records = {r1, r2};
  InterfaceRow i;
  i.name = "eth0";
  i.ifindex = 2;
  i.mac = "52:54:00:12:34:56";
  i.mtu = 1500;
  i.flags = 0x11043;
  i.up = true;
  i.ipv4 = {"10.0.2.15/24"};
  i.ipv6 = {"fd00::15/64"};
  i.stats.rx_bytes = 1000;
  i.stats.tx_bytes = 2000;
  i.stats.rx_packets = 10;
  i.stats.tx_packets = 20;
  i.stats.rx_crc_errors = 4;
  i.stats.tx_window_errors = 5;
  i.stats.rx_missed_errors = 6;
  i.stats_source = "virtnet_stats";
  InterfaceRow i2 = i;
  i2.name = "weird0";
  i2.stats_exact = false;
  i2.stats_note = "driver counters unknown";
  f.set(InterfaceList{});
  f.get<InterfaceList>()->rows = {i, i2};
  OpenFileRow of{7,
                 "x",
                 3,
                 "socket",
                 "socket:[123]",
                 123,
                 0,
                 02000002,
                 (8u << 20) | 1,
                 "sockfs",
                 0xffff888001000000ull,
                 0xffff888002000000ull,
                 0xffff888003000000ull};
  OpenFileRow of2{7,
                  "x",
                  4,
                  "file",
                  "/etc/passwd",
                  99,
                  17,
                  0100000,
                  (254u << 20) | 1,
                  "ext4",
                  0xffff888004000000ull,
                  0,
                  0};
  f.set(OpenFileList{});
  f.get<OpenFileList>()->rows = {of, of2};
  MemoryMapRow mm;
  mm.pid = 7;
  mm.comm = "x";
  mm.start = 0x400000;
  mm.end = 0x401000;
  mm.perms = "r-xp";
  mm.offset = 4096;
  mm.dev = (254u << 20) | 1;
  mm.inode = 99;
  mm.path = "/bin/x";
  mm.vma = 0xffff888005000000ull;
  f.set(MemoryMapList{});
  f.get<MemoryMapList>()->rows = {mm};
  SocketRow s;
  s.proto = "tcp";
  s.state = "LISTEN";
  s.state_code = 10;
  s.local_addr = "0.0.0.0";
  s.local_port = 7001;
  s.remote_addr = "0.0.0.0";
  s.inode = 555;
  s.pid = 7;
  s.comm = "x";
  s.sock = 0xffff888006000000ull;
  SocketRow u;
  u.proto = "unix";
  u.path = "@abstract";
  u.type = "STREAM";
  u.type_code = 1;
  u.flags = 0x10000;
  u.refcount = 2;
  u.sock = 0xffff888007000000ull;
  f.set(SocketList{});
  f.get<SocketList>()->rows = {s, u, u};
  return f;
}

TEST(FrameFromJson, RoundTripsEverySection) {
  const Frame f = sample_frame("vm-a", 1700000000123456789ull);
  const json j = frame_json(f);
  Result<Frame> back = frame_from_json(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(frame_json(*back), j);
  // Through text too, as the stores keep it.
  Result<Frame> again = frame_from_json(json::parse(dump_json(j, -1)));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(frame_json(*again), j);
  // Typed, not just the same JSON.
  EXPECT_EQ(back->get<ProcessList>()->rows[0].comm, f.get<ProcessList>()->rows[0].comm);
  EXPECT_EQ(back->get<OpenFileList>()->rows[0].flags, 02000002u);
  EXPECT_EQ(back->get<OpenFileList>()->rows[0].dev, (8u << 20) | 1);
  EXPECT_EQ(back->get<ModuleList>()->rows[0].base, 0xffffffffc0200000ull);
  EXPECT_EQ(back->get<KmsgLog>()->records[0].caller_id, 0x80000001u);
  EXPECT_EQ(back->get<CpuList>()->rows.at(0).khz, 2399999u);
  EXPECT_EQ(back->get<UptimeInfo>()->load_centi[2], 150u);
  EXPECT_EQ(back->meta.vm.uuid, f.meta.vm.uuid);
  EXPECT_EQ(back->meta.features.at(Feature::named("kmsg")).errors.at("row_errors"), 3u);
}

TEST(FrameFromJson, PartialFramesAndUnknownKeys) {
  Frame f = sample_frame("vm-a", 1);
  f.meta.vm = {};
  f.sections.erase("kmsg");
  f.sections.erase("sockets");
  json j = frame_json(f);
  j["future_section"] = {1, 2};
  j["processes"][0]["future_key"] = "x";
  j["meta"]["features"]["future_feature"] = {{"ok", true}};
  Result<Frame> back = frame_from_json(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->get<KmsgLog>(), nullptr);
  EXPECT_TRUE(back->meta.vm.empty());
  EXPECT_EQ(frame_json(*back), frame_json(f));
}

std::string parse_error(const std::function<void(json&)>& edit) {
  json j = frame_json(sample_frame("vm-a", 1));
  edit(j);
  Result<Frame> r = frame_from_json(j);
  return r.ok() ? "(parsed)" : r.error().message;
}

TEST(FrameFromJson, NamesWhatIsMissingOrMistyped) {
  EXPECT_EQ(parse_error([](json& j) { j["processes"][1].erase("pid"); }),
            "frame: processes[1].pid: missing");
  EXPECT_EQ(parse_error([](json& j) { j["processes"][0]["rss_kb"] = "big"; }),
            "frame: processes[0].rss_kb: expected an integer, got string");
  EXPECT_EQ(parse_error([](json& j) { j["processes"][0]["rss_kb"] = -1; }),
            "frame: processes[0].rss_kb: -1 is negative");
  EXPECT_EQ(parse_error([](json& j) { j["processes"][0]["pid"] = 1.5; }),
            "frame: processes[0].pid: expected an integer, got a fraction");
  EXPECT_EQ(parse_error([](json& j) { j["processes"][0]["pid"] = 1ull << 40; }),
            "frame: processes[0].pid: 1099511627776 is out of range");
  EXPECT_EQ(parse_error([](json& j) { j["processes"][0]["state"] = "SS"; }),
            "frame: processes[0].state: 'SS' is not one letter");
  EXPECT_EQ(parse_error([](json& j) { j["modules"][0]["base"] = "ffff"; }),
            "frame: modules[0].base: 'ffff' does not start with 0x");
  EXPECT_EQ(parse_error([](json& j) { j["modules"][0]["used_by"][1] = 3; }),
            "frame: modules[0].used_by[1]: expected a string, got number");
  EXPECT_EQ(parse_error([](json& j) { j["sockets"] = json::object(); }),
            "frame: sockets: expected an array, got object");
  EXPECT_EQ(parse_error([](json& j) { j["meta"]["cost"].erase("reads"); }),
            "frame: meta.cost.reads: missing");
  EXPECT_EQ(parse_error([](json& j) { j["meta"]["features"]["kmsg"]["errors"]["x"] = true; }),
            "frame: meta.features.kmsg.errors.x: expected an integer, got boolean");
  EXPECT_EQ(parse_error([](json& j) { j["open_files"][0]["dev"] = "8-1"; }),
            "frame: open_files[0].dev: '8-1' is not MAJOR:MINOR");
  EXPECT_EQ(parse_error([](json& j) { j["kmsg"][0]["caller"] = "X1"; }),
            "frame: kmsg[0].caller: 'X1' is not T<tid> or C<cpu>");
  EXPECT_EQ(parse_error([](json& j) { j["uname"] = 5; }),
            "frame: uname: expected an object, got number");
  EXPECT_EQ(parse_error([](json& j) { j["schema"] = "other"; }),
            "frame: schema is 'other', not 'nfm.frame'");
  EXPECT_THAT(parse_error([](json& j) { j["version"] = 99; }), HasSubstr("schema version 99"));
  EXPECT_EQ(parse_error([](json& j) { j.erase("meta"); }), "frame: meta: missing");
  Result<Frame> r = frame_from_json(json::array());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "frame: expected an object, got array");
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/nfm-stores-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Rows of a plain SQL query, each as "a|b|c".
std::vector<std::string> sql(const std::string& db_path, const std::string& query) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::vector<std::string> rows;
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, query.c_str(), -1, &s, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    std::string row;
    for (int i = 0; i < sqlite3_column_count(s); ++i) {
      if (i) row += "|";
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
      row += t ? t : "NULL";
    }
    rows.push_back(row);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return rows;
}

TEST(SqliteStore, WritesFeatureTablesAndReadsFramesBack) {
  TempDir dir;
  const std::string path = dir.file("frames.db");
  std::vector<Frame> written;
  {
    auto sink = open_sqlite_sink(path);
    ASSERT_TRUE(sink.ok()) << sink.error().message;
    EXPECT_EQ((*sink)->describe(), "sqlite:" + path);
    for (int i = 0; i < 3; ++i)
      for (const char* vm : {"vm-a", "vm-b"}) {
        written.push_back(sample_frame(vm, 1000000000ull * (10 + i)));
        (*sink)->write(written.back());
      }
    (*sink)->flush();
    const SinkStats stats = (*sink)->stats();
    EXPECT_EQ(stats.frames_written, 6u);
    EXPECT_EQ(stats.frames_buffered, 0u);
    EXPECT_EQ(stats.frames_dropped, 0u);
    EXPECT_EQ(stats.write_errors, 0u) << stats.last_error;
  }
  // Plain SQL sees real columns.
  EXPECT_EQ(sql(path, "SELECT count(*) FROM frames"), std::vector<std::string>{"6"});
  EXPECT_EQ(sql(path,
                "SELECT p.comm, p.rss_kb, p.state, p.cmdline FROM processes p JOIN frames f "
                "ON f.id = p.frame_id WHERE f.vm = 'vm-b' AND p.pid = 7 ORDER BY f.host_time_ns "
                "DESC LIMIT 1"),
            std::vector<std::string>{"we\"ird\\na\nme|2048|S|[\"/bin/x\",\"--flag\",\"\"]"});
  EXPECT_EQ(
      sql(path, "SELECT name, permanent, taints FROM modules WHERE frame_id = 1 ORDER BY name"),
      (std::vector<std::string>{"dummy|0|", "virtio_net|1|OE"}));
  // Two sockets without an owner and otherwise the same: one row, shown twice.
  EXPECT_EQ(sql(path, "SELECT pid, comm FROM sockets WHERE frame_id = 1"),
            (std::vector<std::string>{"7|x", "NULL|NULL"}));
  EXPECT_EQ(sql(path, "SELECT cache_kb FROM cpuinfo WHERE frame_id = 1"),
            (std::vector<std::string>{"16384", "NULL"}));
  // Rows that did not change are stored once, not once per frame.
  EXPECT_EQ(sql(path, "SELECT total_kb, frame_id, until_frame_id FROM meminfo WHERE vm = 'vm-a'"),
            (std::vector<std::string>{"1|1|NULL"}));
  // The kernel log is stored once per record, not once per frame.
  EXPECT_EQ(sql(path, "SELECT vm, count(*) FROM kmsg GROUP BY vm"),
            (std::vector<std::string>{"vm-a|2", "vm-b|2"}));
  EXPECT_EQ(sql(path, "SELECT json_extract(frame, '$.meta.vm.uuid') FROM frames LIMIT 1"),
            std::vector<std::string>{"0f8fad5b-d9cb-469f-a165-70867728950e"});
  EXPECT_EQ(sql(path, "PRAGMA journal_mode"), std::vector<std::string>{"wal"});

  auto store = open_store("sqlite:" + path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto vms = (*store)->vms();
  ASSERT_TRUE(vms.ok());
  ASSERT_EQ(vms->size(), 2u);
  EXPECT_EQ((*vms)[0].vm.name, "vm-a");
  EXPECT_EQ((*vms)[0].vm.pid, 4242);
  EXPECT_EQ((*vms)[0].vm.host, "hv1");
  EXPECT_EQ((*vms)[0].frames, 3u);
  EXPECT_EQ((*vms)[0].first_ns, 10000000000u);
  EXPECT_EQ((*vms)[0].last_ns, 12000000000u);
  auto refs = (*store)->frames("vm-b", 0, UINT64_MAX, 100);
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    auto f = (*store)->load((*refs)[i].id);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(frame_json(*f), frame_json(written[2 * i + 1]));
  }
  EXPECT_EQ((*store)->frames("", 11000000000u, 11000000000u, 100)->size(), 2u);
  EXPECT_EQ((*store)->frames("", 0, UINT64_MAX, 4)->size(), 4u);
  auto latest = (*store)->latest();
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 2u);
  EXPECT_EQ(frame_json((*latest)[0]), frame_json(written[4]));
  EXPECT_EQ(frame_json((*latest)[1]), frame_json(written[5]));
  auto missing = (*store)->load(999);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("no frame 999"));
}

// A store made by an nfm whose processes feature declared fewer columns: the sink
// adds the new ones (NULL in the old rows) and goes on writing.
TEST(SqliteStore, AddsColumnsDeclaredSinceTheStoreWasMade) {
  TempDir dir;
  const std::string path = dir.file("frames.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db,
                         "CREATE TABLE processes (row_id INTEGER PRIMARY KEY, vm TEXT NOT NULL, "
                         "frame_id INTEGER NOT NULL, host_time_ns INTEGER NOT NULL, "
                         "until_frame_id INTEGER, until_ns INTEGER, pid INTEGER, comm TEXT); "
                         "INSERT INTO processes VALUES (1, 'old', 0, 1, 1, 2, 1, 'init'); "
                         "PRAGMA user_version = 2",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  {
    auto sink = open_sqlite_sink(path);
    ASSERT_TRUE(sink.ok()) << sink.error().message;
    (*sink)->write(sample_frame("vm-a", 1000000000ull));
    (*sink)->flush();
    EXPECT_EQ((*sink)->stats().write_errors, 0u) << (*sink)->stats().last_error;
  }
  EXPECT_EQ(sql(path, "SELECT vm, euid IS NULL FROM processes WHERE pid = 1 ORDER BY vm"),
            (std::vector<std::string>{"old|1"}));
  EXPECT_EQ(sql(path,
                "SELECT count(*) FROM processes WHERE vm = 'vm-a' AND euid IS NOT NULL "
                "AND rss_kb IS NOT NULL"),
            (std::vector<std::string>{
                std::to_string(sample_frame("vm-a", 1).get<ProcessList>()->rows.size())}));
}

TEST(SqliteStore, RetentionDeletesOldFramesAndTheVersionsOnlyTheyShowed) {
  TempDir dir;
  const std::string path = dir.file("frames.db");
  auto sink = open_sink("sqlite:" + path, {.retain_ns = 2500000000ull});
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  std::vector<Frame> written;
  for (int i = 0; i < 6; ++i) {
    written.push_back(sample_frame("vm-a", 1000000000ull * (i + 1)));
    written.back().get<ProcessList>()->rows[0].rss_kb = 100 + i;  // pid 7 changes every frame
    (*sink)->write(written.back());
    (*sink)->flush();  // one batch per frame: retention runs after each
  }
  // Newest at 6 s, kept back to 3.5 s: the frames at 4, 5 and 6 s.
  EXPECT_EQ(sql(path, "SELECT host_time_ns FROM frames ORDER BY host_time_ns"),
            (std::vector<std::string>{"4000000000", "5000000000", "6000000000"}));
  EXPECT_EQ((*sink)->stats().frames_expired, 3u);
  // pid 7's versions of those frames stay; kthreadd, unchanged since the first frame,
  // stays too: the kept frames still show it.
  EXPECT_EQ(sql(path, "SELECT pid, rss_kb, frame_id FROM processes ORDER BY row_id"),
            (std::vector<std::string>{"2|0|1", "7|103|4", "7|104|5", "7|105|6"}));
  auto store = open_store("sqlite:" + path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto refs = (*store)->frames("vm-a", 0, UINT64_MAX, 100);
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    auto f = (*store)->load((*refs)[i].id);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(dump_json(frame_json(*f)), dump_json(frame_json(written[3 + i])));
  }
}

// Row versions: a row is written when it appears or changes and closed when it goes;
// every frame reads back exactly as written, and "the state at frame F" is one query.
TEST(SqliteStore, RowsAreStoredOncePerVersionAndFramesReadBackExactly) {
  TempDir dir;
  const std::string path = dir.file("frames.db");
  std::vector<Frame> written;
  auto with_processes = [](Frame f, std::vector<ProcessRow> rows) {
    f.get<ProcessList>()->rows = std::move(rows);
    return f;
  };
  const Frame base = sample_frame("vm-a", 1000000000ull);
  const ProcessRow p = base.get<ProcessList>()->rows[0], k = base.get<ProcessList>()->rows[1];
  ProcessRow p_grown = p;
  p_grown.rss_kb = 4096;
  {
    auto sink = open_sqlite_sink(path);
    ASSERT_TRUE(sink.ok()) << sink.error().message;
    // 1: p, k   2: p grew (and is listed first still)   3: p is gone   4: k, p back
    written.push_back(base);
    written.push_back(with_processes(sample_frame("vm-a", 2000000000ull), {p_grown, k}));
    written.push_back(with_processes(sample_frame("vm-a", 3000000000ull), {k}));
    written.push_back(with_processes(sample_frame("vm-a", 4000000000ull), {k, p_grown, k}));
    for (const Frame& f : written) (*sink)->write(f);
    (*sink)->flush();
    EXPECT_EQ((*sink)->stats().write_errors, 0u) << (*sink)->stats().last_error;
  }
  EXPECT_EQ(sql(path,
                "SELECT pid, rss_kb, frame_id, until_frame_id FROM processes ORDER BY "
                "row_id"),
            (std::vector<std::string>{"7|2048|1|2", "2|0|1|NULL", "7|4096|2|3", "7|4096|4|NULL"}));
  // The state at frame 2, as docs/stores.md writes it.
  EXPECT_EQ(sql(path,
                "SELECT pid, rss_kb FROM processes WHERE vm = 'vm-a' AND frame_id <= 2 AND "
                "(until_frame_id IS NULL OR until_frame_id > 2) ORDER BY pid"),
            (std::vector<std::string>{"2|0", "7|4096"}));
  // The writer started over: what it left open was closed after the last frame, and
  // the next frame is written anew.
  {
    auto sink = open_sqlite_sink(path);
    ASSERT_TRUE(sink.ok()) << sink.error().message;
    written.push_back(with_processes(sample_frame("vm-a", 5000000000ull), {k}));
    (*sink)->write(written.back());
    (*sink)->flush();
  }
  EXPECT_EQ(sql(path, "SELECT count(*) FROM processes WHERE until_frame_id IS NULL"),
            std::vector<std::string>{"1"});
  EXPECT_EQ(sql(path, "SELECT until_frame_id, until_ns FROM processes WHERE row_id = 4"),
            std::vector<std::string>{"5|4000000001"});

  auto store = open_store("sqlite:" + path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto refs = (*store)->frames("vm-a", 0, UINT64_MAX, 100);
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), written.size());
  for (size_t i = 0; i < written.size(); ++i) {
    auto f = (*store)->load((*refs)[i].id);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(dump_json(frame_json(*f)), dump_json(frame_json(written[i]))) << "frame " << i;
  }
}

// A store of the first schema (every frame's JSON whole) is set aside, still readable,
// and a new one begins.
TEST(SqliteStore, AStoreOfTheFirstSchemaIsSetAsideAndStillRead) {
  TempDir dir;
  const std::string path = dir.file("frames.db");
  const Frame old_frame = sample_frame("vm-old", 1000000000ull);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE frames (id INTEGER PRIMARY KEY, vm TEXT, vm_uuid TEXT, "
                           "vm_pid INTEGER, host TEXT, host_time_ns INTEGER, duration_ns INTEGER, "
                           "kernel_release TEXT, target TEXT, partial INTEGER, frame TEXT); "
                           "PRAGMA user_version = 1",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "INSERT INTO frames VALUES (1, 'vm-old', 'u', 1, 'hv1', "
                                 "1000000000, 1, '6.1', 'qemu:1', 0, ?)",
                                 -1, &s, nullptr),
              SQLITE_OK);
    const std::string text = dump_json(frame_json(old_frame), -1);
    sqlite3_bind_text(s, 1, text.c_str(), -1, SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  {
    auto sink = open_sqlite_sink(path);
    ASSERT_TRUE(sink.ok()) << sink.error().message;
    (*sink)->write(sample_frame("vm-new", 2000000000ull));
    (*sink)->flush();
  }
  EXPECT_EQ(sql(path, "SELECT vm FROM frames"), std::vector<std::string>{"vm-new"});
  EXPECT_EQ(sql(path, "PRAGMA user_version"), std::vector<std::string>{"2"});
  auto old = open_store("sqlite:" + path + ".v1");
  ASSERT_TRUE(old.ok()) << old.error().message;
  auto f = (*old)->load(1);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(frame_json(*f), frame_json(old_frame));
}

// A store held under a size budget: the oldest frames go (with every row of theirs),
// the newest stay, and the deletions are counted.
TEST(SqliteStore, TheSizeBudgetDeletesTheOldestFramesAndTheirRows) {
  TempDir dir;
  const std::string path = dir.file("frames.db");
  constexpr uint64_t kBudget = 1 << 20;
  auto sink = open_sink("sqlite:" + path, {.retain_ns = 0, .max_store_bytes = kBudget});
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  constexpr int kFrames = 1000;  // each ~3 KB (its meta, a new version of pid 7): ~3x the budget
  for (int i = 0; i < kFrames; ++i) {
    Frame f = sample_frame("vm-a", 1000000000ull * (i + 1));
    f.get<ProcessList>()->rows[0].rss_kb = static_cast<uint64_t>(i);
    (*sink)->write(f);
    if (i % 8 == 7) (*sink)->flush();  // batches of 8: the budget is checked after each
  }
  (*sink)->flush();
  const SinkStats stats = (*sink)->stats();
  EXPECT_EQ(stats.write_errors, 0u) << stats.last_error;
  EXPECT_GT(stats.frames_expired, 0u);
  const auto kept = sql(path, "SELECT count(*), max(host_time_ns) FROM frames");
  ASSERT_EQ(kept.size(), 1u);
  const auto kept_count = sql(path, "SELECT count(*) FROM frames");
  EXPECT_EQ(kept[0], fmt::format("{}|{}", kFrames - stats.frames_expired, 1000000000ull * kFrames));
  // The oldest went first: what is left is one run of the newest.
  EXPECT_EQ(sql(path, "SELECT min(host_time_ns) FROM frames"),
            std::vector<std::string>{std::to_string(1000000000ull * (stats.frames_expired + 1))});
  // No version is kept that no remaining frame shows, and every frame has its rows.
  EXPECT_EQ(sql(path,
                "SELECT count(*) FROM processes WHERE until_frame_id <= (SELECT min(id) "
                "FROM frames)"),
            std::vector<std::string>{"0"});
  EXPECT_EQ(sql(path, "SELECT count(*) FROM processes WHERE pid = 7"), kept_count);
  const auto pages = sql(path,
                         "SELECT (page_count - freelist_count) * page_size FROM "
                         "pragma_page_count, pragma_freelist_count, pragma_page_size");
  ASSERT_EQ(pages.size(), 1u);
  // Over by one batch at most (the check follows each batch), and not emptied either.
  EXPECT_LT(std::stoull(pages[0]), kBudget + (256u << 10)) << pages[0];
  EXPECT_GT(std::stoull(pages[0]), kBudget / 2) << pages[0];
}

// A sink whose writes hang: a stop past its deadline drops what still waits and
// says so, instead of waiting for the store.
class HangingSink final : public QueuedSink {
 public:
  HangingSink() : QueuedSink({.limit = 100, .batch_max = 1}) { start_writer(); }
  ~HangingSink() override {
    release();
    stop_writer();
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  std::string describe() const override { return "hanging"; }

 private:
  Result<void> deliver(const Batch& /*frames*/) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return released_; });
    return {};
  }
  void forget(const std::string& /*vm*/) override {}
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
};

TEST(QueuedSink, AStopPastItsDeadlineDropsWhatWaitsAndCountsIt) {
  HangingSink sink;
  for (int i = 0; i < 5; ++i) sink.write(sample_frame("vm-a", 1000000000ull * (i + 1)));
  while (!sink.busy()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(sink.flush_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(50)));
  EXPECT_EQ(sink.abandon(), 4u);  // the fifth is being written
  EXPECT_TRUE(sink.busy());
  sink.write(sample_frame("vm-a", 6000000000ull));  // refused once abandoned
  sink.release();
  EXPECT_TRUE(sink.flush_until(std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  EXPECT_FALSE(sink.busy());
  const SinkStats s = sink.stats();
  EXPECT_EQ(s.frames_written, 1u);
  EXPECT_EQ(s.frames_dropped, 5u);
  EXPECT_EQ(s.frames_buffered, 0u);
}

// The cluster's DDL comes from the same declarations as a single server's tables:
// every table nfm writes (frames, the features' row versions, their ends) gets a
// replicated local table and a Distributed one over it, sharded by VM.
TEST(ClickHouseCluster, EveryTableIsReplicatedAndDistributedByVm) {
  const std::vector<std::string> ddl = clickhouse_cluster_ddl("nfm", "fleet");
  ASSERT_EQ(ddl.size(), 1 + 2 * (1 + store::feature_tables().size() + 1));
  EXPECT_EQ(ddl[0], "CREATE DATABASE IF NOT EXISTS `nfm` ON CLUSTER `fleet`");
  std::vector<std::string> names{"frames"};
  for (const auto& t : store::feature_tables()) names.push_back(t.name);
  names.emplace_back("row_ends");
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& local = ddl[1 + 2 * i];
    const std::string& distributed = ddl[2 + 2 * i];
    EXPECT_THAT(local, HasSubstr("`nfm`.`" + names[i] + "_local` ON CLUSTER `fleet`"));
    EXPECT_THAT(local, HasSubstr("ReplicatedMergeTree('/clickhouse/tables/{shard}/nfm/" + names[i] +
                                 "', '{replica}') PARTITION BY toYYYYMMDD(time) ORDER BY (vm, "
                                 "time)"));
    EXPECT_THAT(local, HasSubstr("`vm` String"));
    EXPECT_THAT(local, HasSubstr("`session` UInt32"));
    EXPECT_THAT(distributed, HasSubstr("`nfm`.`" + names[i] + "` ON CLUSTER `fleet` AS `nfm`.`" +
                                       names[i] + "_local` ENGINE = Distributed(`fleet`, `nfm`, `" +
                                       names[i] + "_local`, cityHash64(vm))"));
  }
  // processes' columns, as the feature declares them, and the version's own
  const auto processes = std::find_if(ddl.begin(), ddl.end(), [](const std::string& sql) {
    return sql.find("`processes_local` ON") != std::string::npos;
  });
  ASSERT_NE(processes, ddl.end());
  EXPECT_THAT(*processes, HasSubstr("`rss_kb` UInt64"));
  EXPECT_THAT(*processes, HasSubstr("`host_time_ns` UInt64"));
  EXPECT_THAT(*processes, HasSubstr("`row_id` Int64"));
  EXPECT_THAT(ddl[1], HasSubstr("`sections` String"));
  EXPECT_THAT(ddl.end()[-2], HasSubstr("`until_frame_id` Int64, `until_ns` UInt64"));
}

TEST(SqliteStore, ErrorsNameTheSpec) {
  TempDir dir;
  auto bad = open_sink("sqlite:" + dir.file("no/such/dir/x.db"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error().message, HasSubstr(dir.file("no/such/dir/x.db")));
  auto missing = open_store("sqlite:" + dir.file("none.db"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("cannot open"));
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir.file("other.db").c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto other = open_store("sqlite:" + dir.file("other.db"));
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(other.error().message, HasSubstr("not an nfm frame store"));
  EXPECT_FALSE(open_sink("sqlite:").ok());
}

TEST(OpenSink, RejectsUnknownSchemesAndBadArguments) {
  auto r = open_sink("mysql:x");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("--emit 'mysql:x': unknown sink"));
  EXPECT_THAT(open_store("prometheus:9000").error().message, HasSubstr("unknown store"));
  EXPECT_THAT(open_sink("clickhouse:ftp://x/db").error().message, HasSubstr("not an http://"));
  EXPECT_THAT(open_sink("clickhouse:http://x:8123/my-db").error().message,
              HasSubstr("'my-db' is not a database name"));
  EXPECT_THAT(open_sink("prometheus:notaport").error().message,
              HasSubstr("'notaport' is not a port"));
  EXPECT_THAT(open_sink("prometheus:host.example:9464").error().message,
              HasSubstr("'host.example' is not an IP address"));
}

// Nothing listens on the port: every frame waits, and past the buffer's size the
// oldest go, counted.
TEST(ClickHouseSink, AFullBufferDropsTheOldestAndCountsThem) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);  // bound, not listening
  auto sink = open_sink(fmt::format("clickhouse:http://127.0.0.1:{}/nfm", ntohs(a.sin_port)),
                        {.buffer_frames = 2});
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  for (int i = 0; i < 5; ++i) (*sink)->write(sample_frame("vm-a", i + 1));
  const SinkStats s = (*sink)->stats();
  EXPECT_EQ(s.frames_dropped, 3u);
  EXPECT_EQ(s.frames_buffered, 2u);
  EXPECT_EQ(s.frames_written, 0u);
  sink->reset();
  close(fd);
}

TEST(ClickHouseUrl, Parses) {
  auto u = parse_clickhouse_url("http://ch1:8123/nfm");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->base, "http://ch1:8123/");
  EXPECT_EQ(u->database, "nfm");
  u = parse_clickhouse_url("https://user:pw@ch1:8443");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->base, "https://user:pw@ch1:8443/");
  EXPECT_EQ(u->database, "default");
  EXPECT_FALSE(parse_clickhouse_url("http:///db").ok());
  EXPECT_FALSE(parse_clickhouse_url("http://h/db?x=1").ok());
}

TEST(Prometheus, ListenAddresses) {
  auto a = parse_listen_address("9464");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "127.0.0.1");
  EXPECT_EQ(a->port, 9464);
  a = parse_listen_address("0.0.0.0:9464");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "0.0.0.0");
  a = parse_listen_address("[::1]:0");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "::1");
  EXPECT_EQ(a->port, 0);
  EXPECT_FALSE(parse_listen_address("70000").ok());
  EXPECT_FALSE(parse_listen_address(":9464").ok());
}

TEST(Prometheus, EscapesLabelValues) {
  EXPECT_EQ(prometheus_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(prometheus_label_value("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(prometheus_label_value("bad\xff\xc3"), "bad\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(Prometheus, ServesMetricsAndForgetsVms) {
  auto exporter = open_prometheus_exporter("0");
  ASSERT_TRUE(exporter.ok()) << exporter.error().message;
  PrometheusExporter& e = **exporter;
  ASSERT_NE(e.port(), 0);
  e.write(sample_frame("vm-a", 5000000000ull));
  e.write(sample_frame("vm-a", 6000000000ull));
  e.write(sample_frame("vm-b", 6000000000ull));
  HttpClient http;
  auto text = http.get(fmt::format("http://127.0.0.1:{}/metrics", e.port()));
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(*text, e.render());
  EXPECT_THAT(*text, HasSubstr("# TYPE nfm_process_cpu_seconds_total counter\n"));
  EXPECT_THAT(*text, HasSubstr("nfm_frames_total{vm=\"vm-a\"} 2\n"));
  EXPECT_THAT(*text, HasSubstr("nfm_process_cpu_seconds_total{vm=\"vm-a\",pid=\"7\",comm="
                               "\"we\\\"ird\\\\na\\nme\"} 1.75\n"));
  EXPECT_THAT(*text, HasSubstr("nfm_process_resident_memory_bytes{vm=\"vm-b\",pid=\"7\",comm="
                               "\"we\\\"ird\\\\na\\nme\"} 2097152\n"));
  EXPECT_THAT(*text, HasSubstr("nfm_sockets{vm=\"vm-a\",proto=\"unix\",state=\"UNCONN\"} 2\n"));
  EXPECT_THAT(*text, HasSubstr("nfm_sockets{vm=\"vm-a\",proto=\"tcp\",state=\"LISTEN\"} 1\n"));
  EXPECT_THAT(
      *text, HasSubstr("nfm_interface_receive_bytes_total{vm=\"vm-a\",interface=\"eth0\"} 1000\n"));
  // Errors count over frames: 3 torn kmsg rows and the failed memory_maps, twice.
  EXPECT_THAT(*text, HasSubstr("nfm_crawl_errors_total{vm=\"vm-a\",feature=\"kmsg\"} 6\n"));
  EXPECT_THAT(*text, HasSubstr("nfm_crawl_errors_total{vm=\"vm-a\",feature=\"memory_maps\"} 2\n"));
  EXPECT_THAT(*text, HasSubstr("nfm_crawl_duration_seconds{vm=\"vm-b\"} 0.012345678\n"));
  // Each family announced once.
  size_t count = 0;
  for (size_t at = 0; (at = text->find("# TYPE nfm_frames_total ", at)) != std::string::npos; ++at)
    ++count;
  EXPECT_EQ(count, 1u);

  e.forget_vm(sample_frame("vm-a", 0).meta.vm);
  const std::string after = e.render();
  EXPECT_THAT(after, testing::Not(HasSubstr("vm=\"vm-a\"")));
  EXPECT_THAT(after, HasSubstr("vm=\"vm-b\""));
  auto missing = http.get(fmt::format("http://127.0.0.1:{}/nothing", e.port()));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("HTTP 404"));
  // The port is taken now.
  auto second = open_prometheus_exporter(std::to_string(e.port()));
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.error().message, HasSubstr("cannot listen"));
}

}  // namespace
}  // namespace nfm
