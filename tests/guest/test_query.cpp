// `nfm query` on two live lab guests (5.10 and 6.12) and on a store `nfm crawl` filled
// from them: osquery-style statements (filters, joins across tables and across VMs,
// aggregates, LIKE, ORDER BY ... LIMIT), each compared with what the guests report
// about themselves on their truth port; and push-down shown by the `frames` table.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fixture.h"
#include "ground_truth.h"
#include "nfm_cli.h"

namespace {

using nfm::lab::GroundTruth;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
});

// Two paused guests, each with the truth it wrote just before the pause.
class Query : public testing::Test {
 protected:
  void SetUp() override {
    for (const char* key : {"5.10", "6.12"}) {
      auto g = nfm::lab::guest(key);
      ASSERT_TRUE(g.ok()) << g.error().to_string();
      guests_.push_back(*g);
    }
    for (nfm::lab::Guest* g : guests_) {
      ASSERT_TRUE(g->request_truth().ok());
      ASSERT_TRUE(g->pause().ok());
      targets_.push_back("qemu:" + std::to_string(g->pid()));
    }
  }
  void TearDown() override {
    for (nfm::lab::Guest* g : guests_) (void)g->resume();
  }

  // `nfm query --json TARGETS... SQL` (or with `store` instead of targets): the rows
  // of the last statement.
  json query(const std::string& sql, const std::vector<std::string>& options = {}) {
    std::vector<std::string> args = {"query", "--json"};
    args.insert(args.end(), options.begin(), options.end());
    if (std::find(options.begin(), options.end(), "--store") == options.end())
      args.insert(args.end(), targets_.begin(), targets_.end());
    args.push_back(sql);
    CliResult r = run_nfm(args);
    EXPECT_EQ(r.status, 0) << sql << "\n" << r.err;
    if (r.status != 0 || r.out.empty()) return json::array();
    // One array per statement that returns rows, a line each.
    json last = json::array();
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) last = json::parse(line);
    return last;
  }

  const GroundTruth& truth(size_t i) const { return guests_[i]->truth(); }
  std::string vm(size_t i) const { return guests_[i]->name(); }
  std::string where_vm(size_t i) const { return "vm = '" + vm(i) + "'"; }

  std::vector<nfm::lab::Guest*> guests_;
  std::vector<std::string> targets_;
};

// Processes (not threads) of a truth, by pid.
std::map<int, const nfm::lab::Process*> processes_of(const GroundTruth& t) {
  std::map<int, const nfm::lab::Process*> out;
  for (const auto& [pid, p] : t.processes)
    if (p.pid == p.tgid) out[pid] = &p;
  return out;
}

TEST_F(Query, ProcessesMatchEachGuest) {
  for (size_t i = 0; i < guests_.size(); ++i) {
    SCOPED_TRACE(vm(i));
    // 1. A filter on vm, every process with osquery's columns.
    const json rows = query(
        "SELECT pid, name, parent, uid, gid, euid, egid, threads, nice, cmdline, path, "
        "on_disk FROM processes WHERE " +
        where_vm(i) + " ORDER BY pid");
    const auto want = processes_of(truth(i));
    ASSERT_EQ(rows.size(), want.size());
    for (const json& r : rows) {
      const int pid = r.at("pid").get<int>();
      ASSERT_TRUE(want.contains(pid)) << "extra pid " << pid;
      const nfm::lab::Process& p = *want.at(pid);
      SCOPED_TRACE(p.comm);
      EXPECT_EQ(nfm::lab::stable_comm(r.at("name").get<std::string>()),
                nfm::lab::stable_comm(p.comm));
      EXPECT_EQ(r.at("parent").get<int>(), p.ppid);
      EXPECT_EQ(r.at("uid").get<uint32_t>(), p.uid);
      EXPECT_EQ(r.at("gid").get<uint32_t>(), p.gid);
      EXPECT_EQ(r.at("euid").get<uint32_t>(), p.euid);
      EXPECT_EQ(r.at("egid").get<uint32_t>(), p.egid);
      EXPECT_EQ(r.at("threads").get<size_t>(), p.tids.size());
      EXPECT_EQ(r.at("nice").get<int>(), p.nice);
      std::string args;
      for (const std::string& a : p.args) args += (args.empty() ? "" : " ") + a;
      EXPECT_TRUE(nfm::lab::same_but_serial_doubles(args, r.at("cmdline").get<std::string>()))
          << r.at("cmdline") << " vs " << args;
      EXPECT_TRUE(nfm::lab::same_but_serial_doubles(p.exe, r.at("path").get<std::string>()));
      EXPECT_EQ(r.at("on_disk").get<int>(), p.exe.empty() ? -1 : 1);
    }
    // 2. LIKE: the workload's processes.
    std::vector<int> want_nfm;
    for (const auto& [pid, p] : want)
      if (p->comm.rfind("nfm-", 0) == 0) want_nfm.push_back(pid);
    std::vector<int> got_nfm;
    for (const json& r : query("SELECT pid FROM processes WHERE " + where_vm(i) +
                               " AND name LIKE 'nfm-%' ORDER BY pid"))
      got_nfm.push_back(r.at("pid").get<int>());
    EXPECT_EQ(got_nfm, want_nfm);
    ASSERT_FALSE(want_nfm.empty());
    // 3. ORDER BY ... LIMIT: the workload's three largest resident sets (VmRSS, in
    // bytes; the reporter's own changes while it reports).
    std::vector<std::pair<uint64_t, int>> by_rss;
    for (const auto& [pid, p] : want)
      if (p->comm.rfind("nfm-", 0) == 0 && p->comm != "nfm-report")
        by_rss.emplace_back(p->rss_kb * 1024, pid);
    std::sort(by_rss.begin(), by_rss.end(), [](auto a, auto b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    const json top = query("SELECT pid, resident_size FROM processes WHERE " + where_vm(i) +
                           " AND name LIKE 'nfm-%' AND name <> 'nfm-report' "
                           "ORDER BY resident_size DESC, pid LIMIT 3");
    ASSERT_EQ(top.size(), 3u);
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ(top[k].at("pid").get<int>(), by_rss[k].second);
      EXPECT_EQ(top[k].at("resident_size").get<uint64_t>(), by_rss[k].first);
    }
  }
}

TEST_F(Query, AggregatesAndJoinsAcrossVms) {
  // 4. An aggregate over both VMs.
  const json counts = query(
      "SELECT vm, count(*) AS n, sum(threads) AS threads FROM processes GROUP BY vm ORDER BY vm");
  ASSERT_EQ(counts.size(), 2u);
  std::map<std::string, std::pair<size_t, size_t>> want;
  for (size_t i = 0; i < guests_.size(); ++i) {
    size_t threads = 0;
    for (const auto& [pid, p] : processes_of(truth(i))) threads += p->tids.size();
    want[vm(i)] = {processes_of(truth(i)).size(), threads};
  }
  for (const json& r : counts) {
    const auto& w = want.at(r.at("vm").get<std::string>());
    EXPECT_EQ(r.at("n").get<size_t>(), w.first);
    EXPECT_EQ(r.at("threads").get<size_t>(), w.second);
  }
  // 5. A join across the two VMs: command names both run.
  std::set<std::string> names[2];
  for (size_t i = 0; i < 2; ++i)
    for (const auto& [pid, p] : processes_of(truth(i)))
      names[i].insert(nfm::lab::stable_comm(p->comm));
  std::set<std::string> both;
  for (const json& r : query("SELECT DISTINCT a.name FROM processes a JOIN processes b "
                             "ON a.name = b.name WHERE a." +
                             where_vm(0) + " AND b." + where_vm(1)))
    both.insert(nfm::lab::stable_comm(r.at("name").get<std::string>()));
  std::set<std::string> want_both;
  std::set_intersection(names[0].begin(), names[0].end(), names[1].begin(), names[1].end(),
                        std::inserter(want_both, want_both.end()));
  // kworker names move: compare those that hold still.
  std::erase_if(both, [](const std::string& n) { return n.rfind("kworker", 0) == 0; });
  std::erase_if(want_both, [](const std::string& n) { return n.rfind("kworker", 0) == 0; });
  EXPECT_EQ(both, want_both);
  EXPECT_TRUE(both.contains("nfm-report"));
  // 6. hostname and kernel of each, one row per VM.
  const json systems = query(
      "SELECT s.vm, s.hostname, o.version, m.memory_total "
      "FROM system_info s JOIN os_version o USING (vm) "
      "JOIN memory_info m USING (vm) ORDER BY s.vm");
  ASSERT_EQ(systems.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const json& r = systems[vm(0) < vm(1) ? i : 1 - i];
    EXPECT_EQ(r.at("vm"), vm(i));
    EXPECT_EQ(r.at("hostname"), truth(i).uname.nodename);
    EXPECT_EQ(r.at("version"), truth(i).uname.release);
    const std::string meminfo = truth(i).section_or("/proc/meminfo");
    const size_t at = meminfo.find("MemTotal:");
    ASSERT_NE(at, std::string::npos);
    EXPECT_EQ(r.at("memory_total").get<uint64_t>(), std::stoull(meminfo.substr(at + 9)) * 1024);
  }
}

TEST_F(Query, FilesSocketsModulesAndInterfacesMatchTheGuest) {
  for (size_t i = 0; i < guests_.size(); ++i) {
    SCOPED_TRACE(vm(i));
    const GroundTruth& t = truth(i);
    const auto procs = processes_of(t);
    // 7. Open files of the workload's processes.
    std::map<std::pair<int, int>, std::string> want_fds, got_fds;
    for (const auto& [pid, p] : procs)
      if (p->comm.rfind("nfm-", 0) == 0 && p->comm != "nfm-report")
        for (const auto& [fd, f] : p->fds) want_fds[{pid, fd}] = f.target;
    for (const json& r : query("SELECT f.pid, f.fd, f.path FROM process_open_files f JOIN "
                               "processes p USING (vm, pid) WHERE f." +
                               where_vm(i) + " AND p.name LIKE 'nfm-%' AND p.name <> 'nfm-report'"))
      got_fds[{r.at("pid").get<int>(), r.at("fd").get<int>()}] = r.at("path").get<std::string>();
    ASSERT_EQ(got_fds.size(), want_fds.size());
    for (const auto& [key, path] : want_fds)
      EXPECT_TRUE(nfm::lab::same_but_serial_doubles(path, got_fds[key]))
          << key.first << "/" << key.second << ": " << got_fds[key] << " vs " << path;
    // 8. Listening TCP ports and their owners (inode and port as /proc/net/tcp has them).
    std::set<std::tuple<int, uint64_t, int>> want_listen, got_listen;  // port, inode, family
    for (const auto& s : t.inet_sockets)
      if (s.proto.rfind("tcp", 0) == 0 && s.state == 10)
        want_listen.insert({s.local_port, s.inode, s.proto == "tcp" ? 2 : 10});
    for (const json& r : query("SELECT port, socket, family, pid, fd FROM listening_ports WHERE " +
                               where_vm(i) + " AND protocol = 6")) {
      got_listen.insert(
          {r.at("port").get<int>(), r.at("socket").get<uint64_t>(), r.at("family").get<int>()});
      // Its owner holds it at that descriptor.
      const nfm::lab::Process* owner = t.process(r.at("pid").get<int>());
      ASSERT_NE(owner, nullptr);
      ASSERT_FALSE(r.at("fd").is_null());
      EXPECT_EQ(owner->fds.at(r.at("fd").get<int>()).target,
                "socket:[" + std::to_string(r.at("socket").get<uint64_t>()) + "]");
    }
    EXPECT_EQ(got_listen, want_listen);
    ASSERT_FALSE(want_listen.empty());
    // 9. Sockets per descriptor, joined to /proc/PID/fd's "socket:[INODE]".
    size_t socket_fds = 0;
    for (const json& r : query("SELECT pid, fd, socket FROM process_open_sockets WHERE " +
                               where_vm(i) + " AND family IN (2, 10)")) {
      const nfm::lab::Process* p = t.process(r.at("pid").get<int>());
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(p->fds.at(r.at("fd").get<int>()).target,
                "socket:[" + std::to_string(r.at("socket").get<uint64_t>()) + "]");
      ++socket_fds;
    }
    EXPECT_GE(socket_fds, want_listen.size());
    // 10. Kernel modules, as /proc/modules.
    std::vector<std::string> got_modules;
    for (const json& r : query("SELECT name FROM kernel_modules WHERE " + where_vm(i)))
      got_modules.push_back(r.at("name").get<std::string>());
    EXPECT_EQ(got_modules, t.modules);
    // 11. IPv4 addresses with their masks, per interface.
    std::set<std::string> want_addresses, got_addresses;
    for (const auto& iface : t.interfaces)
      for (const std::string& a : iface.inet) want_addresses.insert(iface.name + " " + a);
    for (const json& r : query("SELECT interface, address, mask FROM interface_addresses WHERE " +
                               where_vm(i) + " AND address LIKE '%.%'")) {
      in_addr mask{};
      ASSERT_EQ(inet_pton(AF_INET, r.at("mask").get<std::string>().c_str(), &mask), 1);
      const int prefix = __builtin_popcount(mask.s_addr);
      got_addresses.insert(r.at("interface").get<std::string>() + " " +
                           r.at("address").get<std::string>() + "/" + std::to_string(prefix));
    }
    EXPECT_EQ(got_addresses, want_addresses);
    // 12. The kernel log's first record.
    const json banner = query("SELECT text FROM kernel_log WHERE " + where_vm(i) +
                              " AND text LIKE 'Linux version %' LIMIT 1");
    ASSERT_EQ(banner.size(), 1u);
    EXPECT_NE(banner[0].at("text").get<std::string>().find(t.uname.release), std::string::npos);
  }
}

TEST_F(Query, PushesVmAndPidDownToTheCrawl) {
  // 13. Only VM 0's task list is read for a query on VM 0 (and its uptime, for start_time).
  CliResult r =
      run_nfm({"query", "--json", targets_[0], targets_[1],
               "SELECT pid, name, start_time FROM processes WHERE " + where_vm(0) +
                   " AND pid = 1; SELECT vm, feature, pid FROM frames WHERE statement = 1"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream lines(r.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  const json one = json::parse(first);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].at("pid"), 1);
  EXPECT_EQ(nfm::lab::stable_comm(one[0].at("name").get<std::string>()), truth(0).process(1)->comm);
  std::set<std::string> crawled;
  for (const json& f : json::parse(second)) {
    EXPECT_EQ(f.at("vm"), vm(0)) << "read a VM the query excluded";
    crawled.insert(f.at("feature").get<std::string>());
  }
  EXPECT_EQ(crawled, (std::set<std::string>{"processes", "uptime"}));
  // 14. A pid filter narrows the open-files crawl to that process.
  const nfm::lab::Process* net = truth(1).find_process("nfm-net");
  ASSERT_NE(net, nullptr);
  const int pid = net->pid;
  const json narrowed = query("SELECT fd FROM process_open_files WHERE " + where_vm(1) +
                              " AND pid = " + std::to_string(pid) +
                              "; SELECT feature, pid, rows FROM frames WHERE statement = 1");
  ASSERT_EQ(narrowed.size(), 1u);
  EXPECT_EQ(narrowed[0].at("feature"), "open_files");
  EXPECT_EQ(narrowed[0].at("pid"), pid);
  EXPECT_EQ(narrowed[0].at("rows").get<size_t>(), truth(1).process(pid)->fds.size());
}

TEST_F(Query, AStoreAnswersLikeTheLiveGuests) {
  const std::string dir = ::testing::TempDir() + "query-store-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string db = dir + "/frames.db";
  std::vector<std::string> crawl = {"crawl", "--emit",     "sqlite:" + db, "--count",
                                    "2",     "--interval", "100ms"};
  crawl.insert(crawl.end(), targets_.begin(), targets_.end());
  CliResult c = run_nfm(crawl, 300);
  ASSERT_EQ(c.status, 0) << c.err;
  const std::vector<std::string> store = {"--store", "sqlite:" + db};
  // 15. The same statements, live and stored, give the same rows (the guests are paused).
  for (const std::string sql :
       {"SELECT vm, pid, name, parent, uid, threads, resident_size FROM processes ORDER BY vm, pid",
        "SELECT vm, name, size, used_by FROM kernel_modules ORDER BY vm, name",
        "SELECT p.vm, p.name, l.port, l.protocol FROM processes p JOIN listening_ports l "
        "USING (vm, pid) ORDER BY 1, 3, 4",
        "SELECT vm, interface, address, mask FROM interface_addresses ORDER BY 1, 2, 3",
        "SELECT vm, count(*) AS fds FROM process_open_files GROUP BY vm ORDER BY vm"}) {
    SCOPED_TRACE(sql);
    const json live = query(sql);
    EXPECT_FALSE(live.empty());
    EXPECT_EQ(query(sql, store), live);
  }
  // History: both frames of both VMs; --at before the first frame has none.
  const json history = query("SELECT vm, count(DISTINCT time) AS frames FROM uptime GROUP BY vm",
                             {"--store", "sqlite:" + db, "--since", "-1h"});
  ASSERT_EQ(history.size(), 2u);
  for (const json& h : history) EXPECT_EQ(h.at("frames"), 2);
  CliResult before = run_nfm({"query", "--store", "sqlite:" + db, "--at", "2000-01-01T00:00:00Z",
                              "SELECT count(*) FROM processes"});
  EXPECT_EQ(before.status, 1);
  EXPECT_THAT(before.err, testing::HasSubstr("no frames in the time asked for"));
  std::filesystem::remove_all(dir);
}

TEST_F(Query, DiscoversTheHostsVmsByName) {
  // 16. No TARGET: the host's QEMU guests, narrowed by name (other test programs' guests
  // run beside these).
  CliResult r = run_nfm({"query", "--json", "--match", vm(1), "SELECT DISTINCT vm FROM uptime"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse("[{\"vm\": \"" + vm(1) + "\"}]"));
}

TEST(QueryBadInput, ErrorsNameTheProblem) {
  CliResult r = run_nfm({"query", "--store", "sqlite:/nonexistent/x.db", "SELECT 1"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("nfm: error: sqlite:/nonexistent/x.db"));
  r = run_nfm({"query", "/nonexistent-image", "SELECT name FROM processes"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("nfm: error"));
  r = run_nfm({"query", "--at", "-1h", "SELECT 1"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("--at, --since and --until go with --store"));
}

}  // namespace
