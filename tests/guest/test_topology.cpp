// `nfm topology` on three lab guests (5.10, 6.1-cloud, 6.12) joined by a private LAN
// that exists only inside this machine (testing/lab/lan.h), with a known workload:
// services on B and C, A connecting to both (one over IPv6, one over UDP), B to C,
// and A connected to an address outside the three (an echo server of QEMU's user
// network, "guestfwd"). The graph is compared with what each guest reports about itself on its
// truth port (/proc/net and its fds): every edge with both processes and ports,
// every listening service, the outside client one-sided, and nothing else.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <tuple>

#include "fixture.h"
#include "ground_truth.h"
#include "lan.h"
#include "nfm_cli.h"
#include "util/time_text.h"

namespace {

using nfm::lab::GroundTruth;
using nfm::lab::Guest;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

nfm::lab::PrivateLan lan(3);
const char* const kKeys[] = {"lan-a", "lan-b", "lan-c"};

// Outside the three: QEMU's user network runs `cat` for each connection to it.
const char* const kOutside = "10.0.2.100";
constexpr uint16_t kEcho = 9000;

nfm::lab::GuestOptions lan_guest(size_t i, const char* kernel) {
  return {.kernel = kernel,
          .ram_mib = 256,
          .name = kKeys[i],
          .append = lan.append(i),
          .qemu_args = lan.qemu_args(i),
          .user_net = {fmt::format("guestfwd=tcp:{}:{}-cmd:cat", kOutside, kEcho)},
          .exclusive = true};
}

const int kGuests = nfm::lab::declare_guests(
    {lan_guest(0, "5.10"), lan_guest(1, "6.1-cloud"), lan_guest(2, "6.12")});

constexpr uint16_t kWebB = 8080, kDnsB = 5353, kDbC = 5432, kDbC6 = 5433;

// An edge as the test names it: client VM and process -> server VM (or "" for an
// outside client) and port.
struct EdgeKey {
  std::string client_vm, client_comm, proto, server_vm;
  unsigned port = 0;
  auto tied() const { return std::tie(client_vm, client_comm, proto, server_vm, port); }
  bool operator<(const EdgeKey& o) const { return tied() < o.tied(); }
  bool operator==(const EdgeKey& o) const { return tied() == o.tied(); }
};

std::ostream& operator<<(std::ostream& o, const EdgeKey& k) {
  return o << k.client_vm << "/" << k.client_comm << " -> " << k.server_vm << " " << k.proto << "/"
           << k.port;
}

// The guest's own socket owners: inode -> pid.
std::map<uint64_t, int> socket_holders(const GroundTruth& truth) {
  std::map<uint64_t, int> out;
  for (const auto& [pid, p] : truth.processes)
    for (const auto& [fd, info] : p.fds)
      if (info.target.rfind("socket:[", 0) == 0)
        out.emplace(std::stoull(info.target.substr(8)), pid);
  return out;
}

std::string strip_mapped(const std::string& a) {
  return a.rfind("::ffff:", 0) == 0 && a.find('.') != std::string::npos ? a.substr(7) : a;
}

bool loopback(const std::string& a) {
  return a == "::1" || a.rfind("127.", 0) == 0;
}

class Topology : public testing::Test {
 protected:
  void SetUp() override {
    for (const char* key : kKeys) {
      auto g = nfm::lab::guest(key);
      ASSERT_TRUE(g.ok()) << g.error().to_string();
      guests_.push_back(*g);
      targets_.push_back("qemu:" + std::to_string((*g)->pid()));
    }
    if (!workload_started_) start_workload();
  }
  void TearDown() override {
    for (Guest* g : guests_) (void)g->resume();
  }

  // The peers of the workload, started once for the program.
  void start_workload() {
    workload_started_ = true;
    Guest *a = guests_[0], *b = guests_[1], *c = guests_[2];
    for (const auto& [g, command] : std::vector<std::pair<Guest*, std::string>>{
             {b, fmt::format("serve web-b tcp {}", kWebB)},
             {b, fmt::format("serve dns-b udp {}", kDnsB)},
             {c, fmt::format("serve db-c tcp {}", kDbC)},
             {c, fmt::format("serve db-c6 tcp6 {}", kDbC6)}})
      ASSERT_TRUE(g->send_command(command).ok()) << command;
    // Each guest runs its commands in its own time: a dial sent before the other guest
    // listens is refused (seen under CI load). The servers first, then the clients.
    struct Listener {
      Guest* g;
      const char* proto;
      unsigned port;
    };
    for (const Listener& l : {Listener{b, "tcp", kWebB}, Listener{b, "udp", kDnsB},
                              Listener{c, "tcp", kDbC}, Listener{c, "tcp6", kDbC6}}) {
      bool listening = false;
      for (int attempt = 0; attempt < 60 && !listening; ++attempt) {
        if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(500));
        ASSERT_TRUE(l.g->request_truth().ok());
        for (const auto& sock : l.g->truth().inet_sockets)
          listening |= sock.proto == l.proto && sock.local_port == l.port &&
                       (sock.state == 10 || std::string_view(l.proto) == "udp");
      }
      ASSERT_TRUE(listening) << l.g->name() << " does not listen on " << l.proto << "/" << l.port;
    }
    for (const auto& [g, command] : std::vector<std::pair<Guest*, std::string>>{
             {a, fmt::format("dial a-to-b tcp {} {}", lan.ipv4(1), kWebB)},
             {a, fmt::format("dial a-to-c tcp {} {}", lan.ipv4(2), kDbC)},
             {a, fmt::format("dial a-to-c6 tcp6 {} {}", lan.ipv6(2), kDbC6)},
             {a, fmt::format("dial a-udp-b udp {} {}", lan.ipv4(1), kDnsB)},
             {b, fmt::format("dial b-to-c tcp {} {}", lan.ipv4(2), kDbC)},
             {a, fmt::format("dial a-out tcp {} {}", kOutside, kEcho)}})
      ASSERT_TRUE(g->send_command(command).ok()) << command;
    for (Guest* g : guests_) ASSERT_TRUE(g->request_truth().ok());
    for (const char* comm : {"a-to-b", "a-to-c", "a-to-c6", "a-udp-b", "a-out"})
      ASSERT_NE(a->truth().find_process(comm), nullptr) << comm << " did not connect";
    ASSERT_NE(b->truth().find_process("b-to-c"), nullptr) << "b-to-c did not connect";
  }

  // `nfm topology ARGS TARGETS` on the paused guests, after fresh truths when the
  // test compares with them.
  json topology_paused(std::vector<std::string> args = {}, bool fresh_truth = true) {
    if (fresh_truth) {
      for (Guest* g : guests_) EXPECT_TRUE(g->request_truth().ok());
    }
    for (Guest* g : guests_) EXPECT_TRUE(g->pause().ok());
    args.insert(args.begin(), {"topology", "--format", "json"});
    args.insert(args.end(), targets_.begin(), targets_.end());
    CliResult r = run_nfm(args);
    for (Guest* g : guests_) EXPECT_TRUE(g->resume().ok());
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    return r.status == 0 ? json::parse(r.out) : json::object();
  }

  // What the guests themselves say the graph is: every connection between two of
  // them joined by its two ends, one whose peer is none of them one-sided.
  std::set<EdgeKey> expected_edges() const {
    std::map<std::string, std::string> owner;  // lan address -> VM name
    for (size_t i = 0; i < 3; ++i) {
      owner[lan.ipv4(i)] = guests_[i]->name();
      owner[lan.ipv6(i)] = guests_[i]->name();
    }
    std::set<EdgeKey> out;
    for (Guest* g : guests_) {
      const GroundTruth& t = g->truth();
      const auto holders = socket_holders(t);
      std::set<std::pair<std::string, unsigned>> listening;
      for (const auto& s : t.inet_sockets)
        if (s.state == 10 || (s.proto.rfind("udp", 0) == 0 && s.remote_port == 0))
          listening.emplace(s.proto.substr(0, 3), s.local_port);
      for (const auto& s : t.inet_sockets) {
        const std::string proto = s.proto.substr(0, 3), remote = strip_mapped(s.remote_addr);
        if (s.state != 1 || loopback(remote)) continue;
        auto held = holders.find(s.inode);
        const std::string comm = held == holders.end() ? "" : t.processes.at(held->second).comm;
        if (listening.count({proto, s.local_port})) {
          // Our service's client: another guest's edge, or an outside one.
          if (!owner.count(remote)) out.insert({"", "", proto, g->name(), s.local_port});
          continue;
        }
        out.insert(
            {g->name(), comm, proto, owner.count(remote) ? owner.at(remote) : "", s.remote_port});
      }
    }
    return out;
  }

  Guest* guest(const std::string& name) const {
    for (Guest* g : guests_)
      if (g->name() == name) return g;
    return nullptr;
  }

  std::vector<Guest*> guests_;
  std::vector<std::string> targets_;
  static inline bool workload_started_ = false;
};

std::map<std::string, json> nodes_by_id(const json& graph) {
  std::map<std::string, json> out;
  for (const json& n : graph.at("nodes")) out[n.at("id")] = n;
  return out;
}

std::map<EdgeKey, json> edges_by_key(const json& graph) {
  std::map<EdgeKey, json> out;
  for (const json& e : graph.at("edges")) {
    const json& c = e.at("client");
    const bool outside = e.at("from").get<std::string>().rfind("ext:", 0) == 0;
    auto text = [](const json& v) { return v.is_null() ? std::string() : v.get<std::string>(); };
    EdgeKey k{outside ? "" : text(c.at("vm")), outside ? "" : text(c.at("comm")), e.at("proto"),
              text(e.at("server").at("vm")), e.at("port")};
    EXPECT_FALSE(out.count(k)) << "two edges " << k;
    out[k] = e;
  }
  return out;
}

TEST_F(Topology, EdgesAndServicesAreWhatTheGuestsSee) {
  json graph = topology_paused();
  ASSERT_TRUE(graph.contains("edges")) << graph.dump(2);
  const std::string a = guests_[0]->name(), b = guests_[1]->name(), c = guests_[2]->name();

  // The workload's edges, as the guests' own /proc/net shows them, and nothing else.
  const std::set<EdgeKey> want = expected_edges();
  const std::set<EdgeKey> workload = {
      {a, "a-to-b", "tcp", b, kWebB},  {a, "a-to-c", "tcp", c, kDbC},
      {a, "a-to-c6", "tcp", c, kDbC6}, {a, "a-udp-b", "udp", b, kDnsB},
      {b, "b-to-c", "tcp", c, kDbC},   {a, "a-out", "tcp", "", kEcho}};
  for (const EdgeKey& k : workload) EXPECT_TRUE(want.count(k)) << "the guests do not show " << k;
  const auto edges = edges_by_key(graph);
  std::set<EdgeKey> got;
  for (const auto& [k, e] : edges) got.insert(k);
  EXPECT_EQ(got, want) << graph.dump(2);

  // Both processes and ports of each edge, from both guests' own views.
  const auto nodes = nodes_by_id(graph);
  for (const auto& [k, e] : edges) {
    SCOPED_TRACE(testing::Message() << k);
    const bool outside = k.server_vm.empty();
    EXPECT_EQ(e.at("one_sided"), outside);
    EXPECT_EQ(e.at("connections"), 1);
    const json& client = e.at("client");
    const json& server = e.at("server");
    const GroundTruth& t = guest(k.client_vm)->truth();
    const auto* p = t.find_process(k.client_comm);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(client.at("pid"), p->pid);
    // The client's port is its socket's, as the guest's /proc/net has it.
    bool found = false;
    for (const auto& s : t.inet_sockets)
      found |= s.state == 1 && s.local_port == client.at("port") && s.remote_port == k.port &&
               socket_holders(t).count(s.inode) && socket_holders(t).at(s.inode) == p->pid;
    EXPECT_TRUE(found) << t.section_or("/proc/net/tcp") << t.section_or("/proc/net/tcp6")
                       << t.section_or("/proc/net/udp");
    EXPECT_EQ(nodes.at(e.at("from")).at("kind"), "process");
    const json& to = nodes.at(e.at("to"));
    if (outside) {
      EXPECT_EQ(server.at("address"), kOutside);
      EXPECT_TRUE(server.at("pid").is_null());
      EXPECT_EQ(to.at("kind"), "external");
      continue;
    }
    const auto* server_process =
        guest(k.server_vm)
            ->truth()
            .find_process(std::map<unsigned, std::string>{
                {kWebB, "web-b"}, {kDnsB, "dns-b"}, {kDbC, "db-c"}, {kDbC6, "db-c6"}}
                              .at(k.port));
    ASSERT_NE(server_process, nullptr);
    EXPECT_EQ(server.at("pid"), server_process->pid);
    EXPECT_EQ(server.at("comm"), server_process->comm);
    EXPECT_EQ(to.at("kind"), "service");
    EXPECT_EQ(to.at("port"), k.port);
  }
  // The IPv6 edge went over IPv6.
  EXPECT_EQ(edges.at({a, "a-to-c6", "tcp", c, kDbC6}).at("server").at("address"), lan.ipv6(2));

  // Every listening service of every guest (not on loopback only), with its owner.
  std::set<std::string> want_services, got_services;
  for (Guest* g : guests_) {
    const auto holders = socket_holders(g->truth());
    std::map<std::string, std::set<std::string>> addresses;  // "proto/port" -> bound addresses
    std::map<std::string, std::string> owners;
    for (const auto& s : g->truth().inet_sockets) {
      const std::string proto = s.proto.substr(0, 3);
      if (!(s.state == 10 || (proto == "udp" && s.remote_port == 0)) || s.local_port == 0) continue;
      const std::string key = proto + "/" + std::to_string(s.local_port);
      addresses[key].insert(strip_mapped(s.local_addr));
      auto held = holders.find(s.inode);
      if (held != holders.end() && !owners.count(key))
        owners[key] = g->truth().processes.at(held->second).comm;
    }
    for (const auto& [key, list] : addresses) {
      if (std::all_of(list.begin(), list.end(), loopback)) continue;
      want_services.insert(g->name() + " " + key + " " + owners[key]);
    }
  }
  for (const auto& [id, n] : nodes) {
    if (n.at("kind") != "service") continue;
    const std::string vm = nodes.at(n.at("vm")).at("name");
    got_services.insert(vm + " " + n.at("proto").get<std::string>() + "/" +
                        std::to_string(n.at("port").get<int>()) + " " +
                        (n.at("comm").is_null() ? "" : n.at("comm").get<std::string>()));
  }
  EXPECT_EQ(got_services, want_services);
  EXPECT_TRUE(want_services.count(b + " tcp/" + std::to_string(kWebB) + " web-b"));
  EXPECT_TRUE(want_services.count(c + " tcp/" + std::to_string(kDbC6) + " db-c6"));

  // Each VM node has its LAN addresses; the outside address is one external node.
  size_t vms = 0;
  for (const auto& [id, n] : nodes) {
    if (n.at("kind") != "vm") continue;
    ++vms;
    for (size_t i = 0; i < 3; ++i) {
      if (n.at("name") != guests_[i]->name()) continue;
      EXPECT_THAT(n.at("addresses").get<std::vector<std::string>>(),
                  testing::IsSupersetOf({lan.ipv4(i), lan.ipv6(i)}));
    }
  }
  EXPECT_EQ(vms, 3u);
  EXPECT_TRUE(nodes.count(std::string("ext:") + kOutside));
}

TEST_F(Topology, LoopbackOnlyWithLocal) {
  // Every lab guest's nfm-net holds a loopback connection to itself (127.0.0.1:7005 ->
  // 7001); the graph without --local has none (the first test compares it whole).
  json local = topology_paused({"--local"}, false);
  std::set<std::string> vms;
  for (const json& e : local.at("edges"))
    if (e.at("local") == true && e.at("client").at("comm") == "nfm-net" && e.at("port") == 7001)
      vms.insert(e.at("client").at("vm").get<std::string>());
  EXPECT_EQ(vms.size(), 3u) << local.dump(2);  // one per guest
  bool loopback_service = false;  // nfm-net's 7005 end is no service; 7001 is on 0.0.0.0
  for (const json& n : local.at("nodes"))
    loopback_service |= n.at("kind") == "service" && n.at("port") == 7005;
  EXPECT_FALSE(loopback_service);
}

TEST_F(Topology, SvgShowsTheThreeVmsAndTheirEdges) {
  for (Guest* g : guests_) ASSERT_TRUE(g->pause().ok());
  const std::string svg = ::testing::TempDir() + "topology-" + std::to_string(getpid()) + ".svg";
  std::vector<std::string> args = {"topology", "--format", "svg", "-o", svg};
  args.insert(args.end(), targets_.begin(), targets_.end());
  CliResult r = run_nfm(args);
  args[2] = "json";
  args.erase(args.begin() + 3, args.begin() + 5);
  CliResult j = run_nfm(args);
  for (Guest* g : guests_) ASSERT_TRUE(g->resume().ok());
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(j.status, 0) << j.err;
  std::ifstream in(svg);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(svg);
  EXPECT_EQ(text.rfind("<?xml", 0), 0u) << text.substr(0, 200);
  EXPECT_THAT(text, testing::HasSubstr("<svg"));
  EXPECT_THAT(text, testing::EndsWith("</svg>\n"));
  // SVG text escapes '-' as "&#45;".
  for (Guest* g : guests_) {
    std::string name = g->name();
    for (size_t at = 0; (at = name.find('-', at)) != std::string::npos; at += 5)
      name.replace(at, 1, "&#45;");
    EXPECT_THAT(text, testing::HasSubstr(name));
  }
  // graphviz draws each edge as a <g class="edge">, each VM as a cluster.
  size_t drawn = 0, clusters = 0;
  for (size_t at = 0; (at = text.find("class=\"edge\"", at)) != std::string::npos; ++at) ++drawn;
  for (size_t at = 0; (at = text.find("class=\"cluster\"", at)) != std::string::npos; ++at)
    ++clusters;
  EXPECT_EQ(drawn, json::parse(j.out).at("edges").size());
  EXPECT_GE(drawn, 6u);
  EXPECT_EQ(clusters, 3u);
}

TEST_F(Topology, BadInputIsNamed) {
  CliResult r = run_nfm({"topology", "--at", "-1h", targets_[0]});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("topology: --at, --since and --until go with --store"));
  r = run_nfm({"topology", "--store", "sqlite:/nonexistent/x.db"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("nfm: error: sqlite:/nonexistent/x.db"));
  r = run_nfm({"topology", "qemu:no-such-vm-anywhere"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("no-such-vm-anywhere"));
}

// Last: it closes one of the workload's connections.
TEST_F(Topology, FromAStoreAndItsDiff) {
  const std::string dir = ::testing::TempDir() + "topology-store-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string db = dir + "/frames.db";
  std::vector<std::string> crawl = {"crawl",      "--emit", "sqlite:" + db, "--count",         "2",
                                    "--interval", "200ms",  "--features",   "netstat,ifconfig"};
  crawl.insert(crawl.end(), targets_.begin(), targets_.end());
  for (Guest* g : guests_) ASSERT_TRUE(g->pause().ok());
  CliResult c = run_nfm(crawl, 300);
  for (Guest* g : guests_) ASSERT_TRUE(g->resume().ok());
  ASSERT_EQ(c.status, 0) << c.err;
  const json live = topology_paused({}, false);

  // The newest stored frames make the live graph (edges and nodes by id, ends equal).
  CliResult s = run_nfm({"topology", "--format", "json", "--store", "sqlite:" + db});
  ASSERT_EQ(s.status, 0) << s.err;
  const json stored = json::parse(s.out);
  auto without_time = [](json graph) {
    for (json& n : graph.at("nodes")) n.erase("seen");
    for (json& e : graph.at("edges")) e.erase("seen");
    return graph;
  };
  EXPECT_EQ(without_time(stored), without_time(live));

  // A closes one connection; a later crawl sees it gone.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const auto now = [] {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  };
  const std::string before = nfm::iso_time(now());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_TRUE(guests_[0]->send_command("kill a-to-c").ok());
  bool closed = false;
  for (int i = 0; i < 60 && !closed; ++i) {
    ASSERT_TRUE(guests_[2]->request_truth().ok());
    closed = true;
    for (const auto& sock : guests_[2]->truth().inet_sockets)
      closed &= !(sock.local_port == kDbC && sock.state == 1 && sock.remote_addr == lan.ipv4(0));
    if (!closed) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(closed) << guests_[2]->truth().section_or("/proc/net/tcp");
  crawl[4] = "1";
  CliResult c2 = run_nfm(crawl, 300);
  ASSERT_EQ(c2.status, 0) << c2.err;
  const std::string after = nfm::iso_time(now() + 1'000'000'000);

  CliResult d =
      run_nfm({"topology", "--format", "json", "--store", "sqlite:" + db, "--diff", before, after});
  ASSERT_EQ(d.status, 0) << d.err;
  const json diff = json::parse(d.out);
  ASSERT_EQ(diff.at("edges_removed").size(), 1u) << diff.dump(2);
  const json& gone = diff.at("edges_removed")[0];
  EXPECT_EQ(gone.at("client").at("comm"), "a-to-c");
  EXPECT_EQ(gone.at("server").at("vm"), guests_[2]->name());
  EXPECT_EQ(gone.at("port"), kDbC);
  EXPECT_EQ(diff.at("edges_added").size(), 0u) << diff.dump(2);
  EXPECT_EQ(diff.at("services_added").size(), 0u) << diff.dump(2);
  EXPECT_EQ(diff.at("services_removed").size(), 0u) << diff.dump(2);
  CliResult text = run_nfm({"topology", "--store", "sqlite:" + db, "--diff", before, after});
  EXPECT_THAT(text.out, testing::HasSubstr("- connects  tcp a-to-c["));

  // The whole window: the closed edge was last seen before the others.
  CliResult h =
      run_nfm({"topology", "--format", "json", "--store", "sqlite:" + db, "--since", "-1h"});
  ASSERT_EQ(h.status, 0) << h.err;
  const auto history = edges_by_key(json::parse(h.out));
  const std::string a = guests_[0]->name(), b = guests_[1]->name(), c3 = guests_[2]->name();
  const json& closed_edge = history.at({a, "a-to-c", "tcp", c3, kDbC});
  const json& open_edge = history.at({a, "a-to-b", "tcp", b, kWebB});
  EXPECT_EQ(closed_edge.at("seen").at("frames"), 2);
  EXPECT_EQ(open_edge.at("seen").at("frames"), 3);
  EXPECT_LT(closed_edge.at("seen").at("last_ns"), open_edge.at("seen").at("last_ns"));
  std::filesystem::remove_all(dir);
}

}  // namespace
