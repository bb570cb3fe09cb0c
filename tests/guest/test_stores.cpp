// The stores with real frames and real servers: frames crawled in-process from
// two live guests go to SQLite, ClickHouse and the Prometheus exporter at once;
// both stores give back exactly what was written; a ClickHouse server killed
// mid-run and started again loses nothing (the sink buffers, then drains); and a
// real Prometheus server scraping the exporter reports the frame's numbers.
// Every server is this program's own (free loopback ports, temporary data dirs).
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>

#include "features/interfaces/rows.h"
#include "features/processes/rows.h"
#include "features/sockets/rows.h"
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
    auto rss =
        clickhouse.query(fmt::format("SELECT rss_kb FROM nfm_test.processes WHERE vm = '{}' AND "
                                     "host_time_ns = {} AND comm = 'nfm-bigalloc'",
                                     vm, last.meta.host_time_ns));
    ASSERT_TRUE(rss.ok()) << rss.error().message;
    EXPECT_EQ(*rss, std::to_string(big->rss_kb) + "\n");
    auto sockets = clickhouse.query(
        fmt::format("SELECT count() FROM nfm_test.sockets WHERE vm = '{}' AND host_time_ns = {}",
                    vm, last.meta.host_time_ns));
    ASSERT_TRUE(sockets.ok());
    EXPECT_EQ(*sockets, std::to_string(last.get<nfm::SocketList>()->rows.size()) + "\n");
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
