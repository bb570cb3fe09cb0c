// The end-to-end run of the stores: the real `nfm crawl`, discovering two guests,
// emits to SQLite, ClickHouse and a Prometheus endpoint at once while a real Prometheus
// scrapes it; one guest is killed mid-run and the ClickHouse server is stopped and
// started again. After SIGTERM (exit 0, sinks flushed): both stores hold frames of both
// VMs, the same frames in each (ClickHouse lost nothing across its restart); the
// surviving VM's frames have no gaps; the dead VM's frames stop at its death; and
// Prometheus reports both VMs, with the numbers of the stored frames.
//
// One scenario, in order, on one crawler process: the steps build on each other.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "fixture.h"
#include "frame/frame.h"
#include "nfm_cli.h"
#include "store/frame_store.h"
#include "store_servers.h"

namespace {

using namespace std::chrono_literals;
using nfm::testing::ClickHouse;
using nfm::testing::CliResult;
using nfm::testing::Prometheus;
using nfm::testing::run_nfm;
using nfm::testing::TempDir;
using nfm::testing::wait_for;

// Guests of their own: b is killed, and a must never be paused by another program (its
// frames must come without gaps).
const int kGuests = nfm::lab::declare_guests({
    {.kernel = "6.1-cloud", .ram_mib = 384, .name = "stores-a", .exclusive = true},
    {.kernel = "5.10", .ram_mib = 384, .name = "stores-b", .exclusive = true},
});

constexpr auto kInterval = 500ms;
constexpr uint64_t kIntervalNs = std::chrono::nanoseconds(kInterval).count();

uint64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Frames per VM name in a store (empty when it cannot be read right now).
std::map<std::string, uint64_t> frame_counts(const std::string& spec) {
  std::map<std::string, uint64_t> out;
  auto store = nfm::open_store(spec);
  if (!store) return out;
  auto vms = (*store)->vms();
  if (!vms) return out;
  for (const nfm::StoredVm& v : *vms) out[v.vm.name] = v.frames;
  return out;
}

// host_time_ns of every frame of `vm` in the store, oldest first.
std::vector<uint64_t> frame_times(nfm::FrameStore& store, const std::string& vm) {
  std::vector<uint64_t> out;
  auto refs = store.frames(vm, 0, UINT64_MAX, 1'000'000);
  EXPECT_TRUE(refs.ok()) << store.describe() << ": " << refs.error().message;
  if (refs)
    for (const nfm::StoredFrameRef& r : *refs) out.push_back(r.host_time_ns);
  return out;
}

// The QEMU process has exited (gone or a zombie: its memory is released either way).
bool process_dead(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  const size_t paren = stat.rfind(')');
  return stat.empty() || paren == std::string::npos || paren + 2 >= stat.size() ||
         stat[paren + 2] == 'Z' || stat[paren + 2] == 'X';
}

TEST(CrawlStores, EveryStoreAtOnceThroughAGuestDeathAndAClickHouseRestart) {
  NFM_LAB_GUEST(a, "stores-a");
  NFM_LAB_GUEST(b, "stores-b");
  const std::string& na = a->name();
  const std::string& nb = b->name();

  TempDir dir;
  ClickHouse clickhouse(dir.sub("clickhouse"));
  ASSERT_TRUE(clickhouse.start()) << clickhouse.log();
  const uint16_t exporter_port = nfm::testing::free_port();
  ASSERT_NE(exporter_port, 0);
  Prometheus prometheus(dir.sub("prometheus"), exporter_port);
  ASSERT_TRUE(prometheus.start()) << prometheus.log();

  const std::string sqlite_spec = "sqlite:" + dir.sub("sqlite") + "/frames.db";
  const std::string clickhouse_spec = "clickhouse:" + clickhouse.url() + "nfm";
  const std::string crawl_dir = dir.sub("crawl");
  // Discovery, restricted to this program's guests (others run concurrently).
  const std::string match = "nfm-*-" + std::to_string(getpid());
  auto crawl = nfm::testing::NfmProcess::start(
      {"crawl", "--emit", sqlite_spec, "--emit", clickhouse_spec, "--emit",
       fmt::format("prometheus:127.0.0.1:{}", exporter_port), "--match", match, "--interval",
       "500ms", "--features", "ps,uptime,netstat,ifconfig", "--threads", "2"},
      crawl_dir + "/crawl.out", crawl_dir + "/crawl.err");
  auto log = [&] { return nfm::testing::read_file(crawl_dir + "/crawl.err"); };
  auto sqlite_count = [&](const std::string& vm) {
    auto counts = frame_counts(sqlite_spec);
    return counts.count(vm) ? counts.at(vm) : 0;
  };

  // 1. Both VMs are found and crawled into the stores.
  ASSERT_TRUE(wait_for([&] { return sqlite_count(na) >= 3 && sqlite_count(nb) >= 3; }, 180))
      << log();

  // 2. Prometheus scrapes both VMs' metrics from the endpoint, the frames' numbers:
  // nfm-bigalloc's RSS as one of the stored frames of that VM has it.
  std::map<std::string, double> prometheus_rss;
  for (const std::string& vm : {na, nb}) {
    auto rss = prometheus.value(
        fmt::format("nfm_process_resident_memory_bytes{{vm=\"{}\",comm=\"nfm-bigalloc\"}}", vm));
    ASSERT_TRUE(rss) << vm << ": Prometheus never reported it\n" << prometheus.log();
    prometheus_rss[vm] = *rss;
    auto frames = prometheus.value(fmt::format("nfm_frames_total{{vm=\"{}\"}}", vm));
    ASSERT_TRUE(frames) << vm;
    EXPECT_GE(*frames, 1);
    auto uptime = prometheus.value(fmt::format("nfm_guest_uptime_seconds{{vm=\"{}\"}}", vm));
    ASSERT_TRUE(uptime) << vm;
    EXPECT_GT(*uptime, 0);
  }

  // 3. The ClickHouse server is stopped for a while (the SQLite store shows the crawler
  // going on meanwhile), then comes back on its old data. (A clean stop: a SIGKILL
  // between the server's commit and its answer makes any at-least-once client write
  // the batch twice; test_stores covers the SIGKILL.)
  clickhouse.stop();
  const uint64_t a_before = sqlite_count(na);
  EXPECT_TRUE(wait_for([&] { return sqlite_count(na) >= a_before + 8; }, 120))
      << "the crawler stalled while ClickHouse was down\n"
      << log();
  ASSERT_TRUE(clickhouse.start()) << clickhouse.log();

  // 4. Kill guest b: its frames stop, a's go on, the crawler lives.
  ASSERT_EQ(kill(b->pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return process_dead(b->pid()); }, 60));
  const uint64_t b_dead_ns = now_ns();
  EXPECT_TRUE(
      wait_for([&] { return log().find("event=vm_lost vm=" + nb) != std::string::npos; }, 60))
      << log();
  const uint64_t a_after = sqlite_count(na);
  EXPECT_TRUE(wait_for([&] { return sqlite_count(na) >= a_after + 4; }, 120)) << log();
  EXPECT_TRUE(crawl.running()) << log();

  // 5. SIGTERM: clean exit, the sinks flushed (ClickHouse's buffer included).
  crawl.signal(SIGTERM);
  ASSERT_EQ(crawl.wait(120), 0) << log();
  EXPECT_THAT(log(), testing::HasSubstr("crawl stopped (SIGTERM)"));

  auto sqlite = nfm::open_store(sqlite_spec);
  ASSERT_TRUE(sqlite.ok()) << sqlite.error().message;
  auto ch = nfm::open_store(clickhouse_spec);
  ASSERT_TRUE(ch.ok()) << ch.error().message;
  for (nfm::FrameStore* store : {sqlite->get(), ch->get()}) {
    auto vms = store->vms();
    ASSERT_TRUE(vms.ok()) << store->describe() << ": " << vms.error().message;
    std::set<std::string> names;
    for (const nfm::StoredVm& v : *vms) names.insert(v.vm.name);
    EXPECT_EQ(names, (std::set<std::string>{na, nb})) << store->describe();
  }
  for (const std::string& vm : {na, nb}) {
    SCOPED_TRACE(vm);
    const std::vector<uint64_t> in_sqlite = frame_times(**sqlite, vm);
    const std::vector<uint64_t> in_clickhouse = frame_times(**ch, vm);
    ASSERT_FALSE(in_sqlite.empty());
    // The same frames in both: nothing lost across the ClickHouse restart, nothing twice.
    EXPECT_EQ(in_clickhouse, in_sqlite);
    EXPECT_TRUE(std::is_sorted(in_sqlite.begin(), in_sqlite.end()));
    if (vm == na) {
      // No gaps: a crawl starts every interval (the next one interval after the previous
      // began, or at once when late) and these light features take well under one on an
      // idle guest. 8 intervals (4 s) leaves room for a loaded 2-core CI machine and
      // sanitizers, yet a crawler blocked by the ClickHouse outage (which lasted at
      // least 8 of a's frames, >= 3.5 s, plus the server's start) or a dropped frame
      // would show.
      for (size_t i = 1; i < in_sqlite.size(); ++i)
        EXPECT_LE(in_sqlite[i] - in_sqlite[i - 1], 8 * kIntervalNs) << "gap before frame " << i;
    } else {
      // Every frame of the dead VM began before its QEMU was gone.
      EXPECT_LT(in_sqlite.back(), b_dead_ns);
    }
  }
  // Both VMs' stored frames have nfm-bigalloc at the RSS Prometheus reported (the
  // workload allocates once and holds it; the frame Prometheus saw is one of these).
  for (const std::string& vm : {na, nb}) {
    auto refs = (*sqlite)->frames(vm, 0, UINT64_MAX, 1'000'000);
    ASSERT_TRUE(refs.ok());
    std::set<double> rss;
    for (const nfm::StoredFrameRef& r : *refs) {
      auto f = (*sqlite)->load(r.id);
      ASSERT_TRUE(f.ok()) << f.error().message;
      if (f->get<nfm::ProcessList>())
        for (const nfm::ProcessRow& p : f->get<nfm::ProcessList>()->rows)
          if (p.comm == "nfm-bigalloc") rss.insert(p.rss_kb * 1024.0);
    }
    EXPECT_TRUE(rss.count(prometheus_rss[vm])) << vm << ": Prometheus said " << prometheus_rss[vm]
                                               << ", frames " << testing::PrintToString(rss);
  }
  // `nfm query` reads either store through the same tables: the same newest frames,
  // the same answers.
  for (const std::string sql :
       {"SELECT vm, count(*) AS n, sum(resident_size) AS rss FROM processes GROUP BY vm ORDER BY "
        "vm",
        "SELECT p.vm, p.name, l.port, l.protocol FROM processes p JOIN listening_ports l "
        "USING (vm, pid) ORDER BY 1, 3, 4, 2"}) {
    SCOPED_TRACE(sql);
    CliResult from_sqlite = run_nfm({"query", "--json", "--store", sqlite_spec, sql});
    ASSERT_EQ(from_sqlite.status, 0) << from_sqlite.err;
    CliResult from_clickhouse = run_nfm({"query", "--json", "--store", clickhouse_spec, sql});
    ASSERT_EQ(from_clickhouse.status, 0) << from_clickhouse.err;
    const nlohmann::json rows = nlohmann::json::parse(from_sqlite.out);
    std::set<std::string> vms;
    for (const auto& r : rows) vms.insert(r.at("vm").get<std::string>());
    EXPECT_EQ(vms, (std::set<std::string>{na, nb}));
    EXPECT_EQ(nlohmann::json::parse(from_clickhouse.out), rows);
  }
  std::cout << "nfm crawl's events:\n" << log();
}

}  // namespace
