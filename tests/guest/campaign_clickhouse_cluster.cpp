// The distributed store, run for real: a ClickHouse cluster of 2 shards x 2 replicas
// (Debian's clickhouse-server 18.16) coordinated by Debian's ZooKeeper, all this
// program's own (loopback ports, temporary data dirs); its tables made by
// `nfm store init-cluster`; two `nfm crawl` processes ("two hypervisor hosts", each
// with its own guests) writing to different nodes; the node one crawler writes to,
// a replica of the first shard, killed mid-run and started again. Then every VM's
// frames are in the Distributed tables exactly once per frame crawled (the crawlers'
// own JSON Lines files count them) and each reads back through them exactly as
// crawled (its meta, its runs and the row versions it names), both replicas of each
// shard hold the same, a VM's row versions and their ends are on its frames' shard,
// and `nfm top --store` and `nfm topology --store` see every VM.
//
// Not part of ctest (CI's 20 minutes): scripts/clickhouse-cluster.sh runs it.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "fixture.h"
#include "frame/frame_json.h"
#include "nfm_cli.h"
#include "store/frame_store.h"
#include "store_servers.h"

namespace {

using json = nlohmann::json;
using nfm::testing::ClickHouse;
using nfm::testing::CliResult;
using nfm::testing::NfmProcess;
using nfm::testing::run_nfm;
using nfm::testing::TempDir;
using nfm::testing::ZooKeeper;

const int kGuests = nfm::lab::declare_guests({{.kernel = "5.10", .ram_mib = 384},
                                              {.kernel = "6.1", .ram_mib = 384},
                                              {.kernel = "6.1-cloud", .ram_mib = 384},
                                              {.kernel = "6.12", .ram_mib = 384}});

// The frames of a crawler's JSON Lines file by VM and host_time_ns: what it crawled.
using Crawled = std::map<std::pair<std::string, uint64_t>, json>;
void read_frames(const std::string& path, Crawled& out) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;
    // The key first: json's operator= takes its argument by value, made before the left side.
    std::pair<std::string, uint64_t> key{j["meta"]["vm"]["name"].get<std::string>(),
                                         j["meta"]["host_time_ns"].get<uint64_t>()};
    out[std::move(key)] = std::move(j);
  }
}

// "vm\tcount" lines of a query, as a map.
std::map<std::string, int> counts(ClickHouse& node, const std::string& sql) {
  std::map<std::string, int> out;
  auto r = node.query(sql + " FORMAT TabSeparated");
  if (!r) return out;
  std::istringstream in(*r);
  for (std::string vm, n; std::getline(in, vm, '\t') && std::getline(in, n);)
    out[vm] = std::stoi(n);
  return out;
}

std::string describe(const std::map<std::string, int>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += fmt::format("{}={} ", k, v);
  return s;
}

TEST(ClickHouseCluster, TwoCrawlersTwoShardsTwoReplicasAReplicaKilledNothingLost) {
  if (!ZooKeeper::installed()) GTEST_SKIP() << "needs Debian's zookeeper package";
  TempDir dir;
  ZooKeeper zk(dir.sub("zookeeper"));
  ASSERT_TRUE(zk.start()) << zk.log();

  // Nodes 0, 1: shard 01; nodes 2, 3: shard 02.
  std::vector<std::unique_ptr<ClickHouse>> nodes;
  nodes.reserve(4);
  for (int i = 0; i < 4; ++i)
    nodes.push_back(std::make_unique<ClickHouse>(dir.sub(fmt::format("ch{}", i))));
  std::string shards;
  for (int s = 0; s < 2; ++s)
    shards += fmt::format(
        "<shard><internal_replication>true</internal_replication>"
        "<replica><host>127.0.0.1</host><port>{}</port></replica>"
        "<replica><host>127.0.0.1</host><port>{}</port></replica></shard>",
        nodes[2 * static_cast<size_t>(s)]->tcp_port(),
        nodes[2 * static_cast<size_t>(s) + 1]->tcp_port());
  for (int i = 0; i < 4; ++i) {
    nodes[i]->add_config(
        fmt::format("  <interserver_http_host>127.0.0.1</interserver_http_host>\n"
                    "  <interserver_http_port>{}</interserver_http_port>\n"
                    "  <zookeeper><node><host>127.0.0.1</host><port>{}</port></node></zookeeper>\n"
                    "  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n"
                    "  <remote_servers><nfm>{}</nfm></remote_servers>\n"
                    "  <macros><shard>0{}</shard><replica>ch{}</replica></macros>\n",
                    nfm::testing::free_port(), zk.port(), shards, i / 2 + 1, i));
    ASSERT_TRUE(nodes[i]->start()) << nodes[i]->log();
  }
  const auto spec = [&](int i) { return "clickhouse:" + nodes[i]->url() + "nfm"; };

  CliResult init = run_nfm({"store", "init-cluster", "--cluster", "nfm", spec(1)}, 300);
  ASSERT_EQ(init.status, 0) << init.err << nodes[1]->log();

  // Host A: two guests into node 0; host B: two guests into node 2.
  std::vector<std::string> names;
  std::vector<std::string> targets;
  for (const char* key : {"5.10", "6.1", "6.1-cloud", "6.12"}) {
    NFM_LAB_GUEST(g, key);
    targets.push_back("qemu:" + std::to_string(g->pid()));
    names.push_back(g->name());
  }
  const std::string a_file = dir.sub("a") + "/frames.jsonl",
                    b_file = dir.sub("b") + "/frames.jsonl";
  auto crawler = [&](const std::string& node, const std::string& t1, const std::string& t2,
                     const std::string& file, const std::string& host_dir) {
    return NfmProcess::start(
        {"crawl", t1, t2, "--emit", node, "--emit", "file:" + file, "--interval", "500ms",
         "--features", "ps,uptime,netstat,ifconfig", "--duration", "30s", "--log", "logfmt"},
        host_dir + "/crawl.out", host_dir + "/crawl.err");
  };
  NfmProcess a = crawler(spec(0), targets[0], targets[1], a_file, dir.sub("a"));
  NfmProcess b = crawler(spec(2), targets[2], targets[3], b_file, dir.sub("b"));

  // Mid-run, the node host A writes to (shard 01's first replica) dies and comes back.
  std::this_thread::sleep_for(std::chrono::seconds(10));
  nodes[0]->kill();
  std::this_thread::sleep_for(std::chrono::seconds(8));
  ASSERT_TRUE(nodes[0]->start()) << nodes[0]->log();

  EXPECT_EQ(a.wait(90), 0) << nfm::testing::read_file(dir.sub("a") + "/crawl.err");
  EXPECT_EQ(b.wait(90), 0) << nfm::testing::read_file(dir.sub("b") + "/crawl.err");
  const std::string a_log = nfm::testing::read_file(dir.sub("a") + "/crawl.err");
  // The kill was seen (the sink retried), not missed.
  EXPECT_THAT(a_log, testing::HasSubstr("event=sink_error"));

  Crawled crawled_frames;
  read_frames(a_file, crawled_frames);
  read_frames(b_file, crawled_frames);
  std::map<std::string, int> crawled;
  for (const auto& [key, frame] : crawled_frames) ++crawled[key.first];
  ASSERT_EQ(crawled.size(), 4u) << describe(crawled);
  for (const auto& [vm, n] : crawled) EXPECT_GT(n, 20) << vm;

  // Through the Distributed tables from a node neither crawler wrote to: every frame
  // once (retried inserts may land twice: the reader counts distinct frames).
  // Replication and the Distributed queues settle in the background.
  const std::string per_vm = " GROUP BY vm ORDER BY vm";
  std::map<std::string, int> stored;
  EXPECT_TRUE(nfm::testing::wait_for(
      [&] {
        stored = counts(*nodes[3], "SELECT vm, uniqExact(frame_id) FROM nfm.frames" + per_vm);
        return stored == crawled;
      },
      180))
      << "crawled " << describe(crawled) << "\nstored " << describe(stored) << "\n"
      << nodes[0]->log();
  // ... and each reads back exactly as crawled, its rows from the row versions (the
  // store waits for the Distributed queues: a frame whose rows are not all there yet
  // is retried).
  auto store = nfm::open_store(spec(3));
  ASSERT_TRUE(store.ok()) << store.error().message;
  int exact = 0;
  for (const auto& [name, n] : crawled) {
    auto refs = (*store)->frames(name, 0, UINT64_MAX, 100000);
    ASSERT_TRUE(refs.ok()) << refs.error().message;
    ASSERT_EQ(refs->size(), static_cast<size_t>(n)) << name;
    for (const nfm::StoredFrameRef& r : *refs) {
      auto it = crawled_frames.find({name, r.host_time_ns});
      ASSERT_NE(it, crawled_frames.end()) << name << " " << r.host_time_ns;
      std::string last_error;
      EXPECT_TRUE(nfm::testing::wait_for(
          [&] {
            auto f = (*store)->load(r.id);
            last_error = f ? "" : f.error().message;
            return f && nfm::frame_json(*f) == it->second;
          },
          60))
          << name << " frame at " << r.host_time_ns << ": " << last_error;
      ++exact;
    }
  }
  EXPECT_EQ(exact, static_cast<int>(crawled_frames.size()));

  // Each VM's frames are on the shard its name hashes to (Distributed's sharding key,
  // cityHash64(vm) % 2 with equal weights), on both of its replicas, and nowhere else.
  for (const auto& [name, frames] : crawled) {
    const std::string vm = name;  // a lambda below uses it
    const int n = frames;
    auto hash = nodes[3]->query(fmt::format("SELECT cityHash64('{}') % 2 FORMAT TabSeparated", vm));
    ASSERT_TRUE(hash.ok()) << hash.error().message;
    const int home = std::stoi(*hash);
    for (int i = 0; i < 4; ++i) {
      const int expected = i / 2 == home ? n : 0;
      int held = -1;
      EXPECT_TRUE(nfm::testing::wait_for(
          [&] {
            const auto c = counts(*nodes[i], fmt::format("SELECT vm, uniqExact(frame_id) FROM "
                                                         "nfm.frames_local WHERE vm = '{}'{}",
                                                         vm, per_vm));
            held = c.count(vm) ? c.at(vm) : 0;
            return held == expected;
          },
          120))
          << vm << " on node " << i << " (shard " << i / 2 + 1 << "): " << held << " frames, "
          << expected << " expected";
      // Its row versions and their ends with them (a frame is read from one shard).
      for (const char* table : {"processes_local", "row_ends_local"}) {
        const auto rows = counts(*nodes[i], fmt::format("SELECT vm, count() FROM nfm.{} WHERE vm "
                                                        "= '{}'{}",
                                                        table, vm, per_vm));
        const int n_rows = rows.count(vm) ? rows.at(vm) : 0;
        if (i / 2 == home)
          EXPECT_GT(n_rows, 0) << vm << " " << table << " on node " << i;
        else
          EXPECT_EQ(n_rows, 0) << vm << " " << table << " on node " << i;
      }
    }
  }

  // The readers see every VM of both hosts through any node.
  const CliResult top = run_nfm({"top", "-b", "-n", "1", "-d", "0.1", "--store", spec(1)});
  ASSERT_EQ(top.status, 0) << top.err;
  for (const std::string& vm : names) EXPECT_THAT(top.out, testing::HasSubstr("VM " + vm)) << vm;
  const CliResult topology = run_nfm({"topology", "--format", "json", "--store", spec(3)});
  ASSERT_EQ(topology.status, 0) << topology.err;
  for (const std::string& vm : names) EXPECT_THAT(topology.out, testing::HasSubstr(vm)) << vm;
}

}  // namespace
