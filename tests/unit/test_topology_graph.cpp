// The topology join on hand-made views: which end is the client, what a missing
// mirror means, shared addresses, loopback, UDP, history and diffs. The real-guest
// proof is tests/guest/test_topology.cpp.
#include <gtest/gtest.h>

#include "topology/graph.h"
#include "topology/render.h"

namespace nfm::topology {
namespace {

SocketRow tcp(std::string la, uint16_t lp, std::string ra, uint16_t rp, int32_t pid,
              std::string comm, std::string state = "ESTABLISHED") {
  return {.proto = la.find(':') == std::string::npos ? "tcp" : "tcp6",
          .state = std::move(state),
          .local_addr = std::move(la),
          .remote_addr = std::move(ra),
          .local_port = lp,
          .remote_port = rp,
          .pid = pid,
          .comm = std::move(comm)};
}

SocketRow listener(std::string la, uint16_t lp, int32_t pid, std::string comm) {
  return tcp(std::move(la), lp, "0.0.0.0", 0, pid, std::move(comm), "LISTEN");
}

VmView vm(std::string name, const std::vector<std::string>& addresses,
          std::vector<SocketRow> sockets, uint64_t time_ns = 1000) {
  InterfaceRow eth{.name = "eth0"}, lo{.name = "lo", .ipv4 = {"127.0.0.1/8"}, .ipv6 = {"::1/128"}};
  for (const std::string& a : addresses)
    (a.find(':') == std::string::npos ? eth.ipv4 : eth.ipv6).push_back(a + "/24");
  return {.vm = {.name = std::move(name), .host = "h"},
          .time_ns = time_ns,
          .interfaces = {lo, eth},
          .sockets = std::move(sockets)};
}

const Edge* edge_to(const Graph& g, const std::string& to) {
  for (const Edge& e : g.edges)
    if (e.to == to) return &e;
  return nullptr;
}

TEST(TopologyGraph, BothEndsMakeOneEdgeFromTheClientToTheService) {
  Graph g = build_graph({
      vm("web", {"10.1.0.1"}, {tcp("10.1.0.1", 40000, "10.1.0.2", 5432, 10, "app")}),
      vm("db", {"10.1.0.2"},
         {listener("0.0.0.0", 5432, 20, "postgres"),
          tcp("10.1.0.2", 5432, "10.1.0.1", 40000, 21, "postgres")}),
  });
  ASSERT_EQ(g.edges.size(), 1u);
  const Edge& e = g.edges[0];
  EXPECT_EQ(e.from, "proc:h/web:10");
  EXPECT_EQ(e.to, "svc:h/db:tcp:5432");
  EXPECT_EQ(e.client.comm, "app");
  EXPECT_EQ(e.server.pid, 21);
  EXPECT_EQ(e.server.vm, "db");
  EXPECT_FALSE(e.one_sided);
  ASSERT_EQ(g.services.size(), 1u);
  EXPECT_EQ(g.services[0].comm, "postgres");
  ASSERT_EQ(g.processes.size(), 1u);
  EXPECT_TRUE(g.externals.empty());
}

TEST(TopologyGraph, AConnectionWithoutItsMirrorIsOneSided) {
  // db does not show the other end (not monitored, or NAT rewrote it).
  Graph g = build_graph({
      vm("web", {"10.1.0.1"},
         {tcp("10.1.0.1", 40000, "10.1.0.2", 5432, 10, "app"), listener("0.0.0.0", 80, 11, "nginx"),
          tcp("10.1.0.1", 80, "203.0.113.7", 51000, 11, "nginx")}),
      vm("db", {"10.1.0.2"}, {listener("0.0.0.0", 5432, 20, "postgres")}),
  });
  const Edge* out = edge_to(g, "ext:10.1.0.2");
  ASSERT_NE(out, nullptr);
  EXPECT_TRUE(out->one_sided);
  EXPECT_EQ(out->port, 5432);
  const Edge* in = edge_to(g, "svc:h/web:tcp:80");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->from, "ext:203.0.113.7");
  EXPECT_TRUE(in->one_sided);
  EXPECT_EQ(in->server.comm, "nginx");
  EXPECT_EQ(g.externals.size(), 2u);
}

TEST(TopologyGraph, ASharedAddressIsDecidedByTheMirror) {
  // Both "b" and "c" call themselves 10.0.2.15 (each behind its own NAT); only c
  // holds the other end.
  Graph g = build_graph({
      vm("a", {"10.9.0.1"}, {tcp("10.9.0.1", 41000, "10.0.2.15", 22, 1, "ssh")}),
      vm("b", {"10.0.2.15"}, {listener("0.0.0.0", 22, 5, "sshd")}),
      vm("c", {"10.0.2.15"},
         {listener("0.0.0.0", 22, 7, "sshd"), tcp("10.0.2.15", 22, "10.9.0.1", 41000, 8, "sshd")}),
  });
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].to, "svc:h/c:tcp:22");
}

TEST(TopologyGraph, TwoVmsClaimingTheOtherEndDecideNothing) {
  // A hostile "evil" copies b's address and forges the mirror socket: the edge is not
  // given to either; it stays one-sided and names both claimants. (b's and evil's
  // own ends are contested the same way: nothing involved is confirmed.)
  const SocketRow mirror = tcp("10.0.2.15", 22, "10.9.0.1", 41000, 8, "sshd");
  Graph g = build_graph({
      vm("a", {"10.9.0.1"}, {tcp("10.9.0.1", 41000, "10.0.2.15", 22, 1, "ssh")}),
      vm("b", {"10.0.2.15"}, {listener("0.0.0.0", 22, 7, "sshd"), mirror}),
      vm("evil", {"10.0.2.15"}, {listener("0.0.0.0", 22, 66, "fake"), mirror}),
  });
  const Edge* from_a = nullptr;
  for (const Edge& e : g.edges) {
    EXPECT_TRUE(e.one_sided) << e.id;
    if (e.from == "proc:h/a:1") from_a = &e;
  }
  ASSERT_NE(from_a, nullptr);
  EXPECT_EQ(from_a->to, "ext:10.0.2.15");
  EXPECT_EQ(from_a->contested_by, (std::vector<std::string>{"b", "evil"}));
  EXPECT_NE(graph_text(g).find("claimed by b, evil"), std::string::npos);
}

TEST(TopologyGraph, AVmCopyingTheClientsEndDecidesNothingEither) {
  // "evil" copies a's address and a's socket to pose as the client of b's service.
  const SocketRow client = tcp("10.9.0.1", 41000, "10.1.0.2", 22, 1, "ssh");
  Graph g = build_graph({
      vm("a", {"10.9.0.1"}, {client}),
      vm("b", {"10.1.0.2"},
         {listener("0.0.0.0", 22, 7, "sshd"), tcp("10.1.0.2", 22, "10.9.0.1", 41000, 8, "sshd")}),
      vm("evil", {"10.9.0.1"}, {client}),
  });
  for (const Edge& e : g.edges) {
    EXPECT_TRUE(e.one_sided) << e.id;  // no confirmed edge for a, b or evil
    EXPECT_FALSE(e.contested_by.empty()) << e.id;
  }
  EXPECT_FALSE(g.edges.empty());
}

TEST(TopologyGraph, AClosingEndIsNoMirror) {
  // The client's socket is already in FIN_WAIT1: the server's still-established end
  // is not skipped as "the client adds it": it shows, one-sided.
  Graph g = build_graph({
      vm("a", {"10.9.0.1"}, {tcp("10.9.0.1", 41000, "10.1.0.2", 80, 1, "curl", "FIN_WAIT1")}),
      vm("b", {"10.1.0.2"},
         {listener("0.0.0.0", 80, 7, "nginx"), tcp("10.1.0.2", 80, "10.9.0.1", 41000, 8, "nginx")}),
  });
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].from, "ext:10.9.0.1");
  EXPECT_EQ(g.edges[0].to, "svc:h/b:tcp:80");
  EXPECT_TRUE(g.edges[0].one_sided);
}

TEST(TopologyGraph, ALocalConnectionWithoutItsOtherEndPointsAtNoMissingNode) {
  Graph g =
      build_graph({vm("a", {"10.9.0.1"}, {tcp("127.0.0.1", 45000, "127.0.0.1", 9, 4, "app")})},
                  {.local = true});
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].to, "ext:127.0.0.1");
  EXPECT_TRUE(g.edges[0].one_sided);
  ASSERT_EQ(g.externals.size(), 1u);
}

TEST(TopologyGraph, LoopbackOnlyWhenAsked) {
  VmView v = vm("a", {"10.9.0.1"},
                {listener("127.0.0.1", 6379, 3, "redis"),
                 tcp("127.0.0.1", 6379, "127.0.0.1", 45000, 3, "redis"),
                 tcp("127.0.0.1", 45000, "127.0.0.1", 6379, 4, "app")});
  Graph quiet = build_graph({v});
  EXPECT_TRUE(quiet.edges.empty());
  EXPECT_TRUE(quiet.services.empty());  // listens on loopback only
  Graph local = build_graph({v}, {.local = true});
  ASSERT_EQ(local.edges.size(), 1u);
  EXPECT_TRUE(local.edges[0].local);
  EXPECT_EQ(local.edges[0].from, "proc:h/a:4");
  EXPECT_EQ(local.edges[0].to, "svc:h/a:tcp:6379");
  EXPECT_EQ(local.services.size(), 1u);
}

TEST(TopologyGraph, UdpJoinsAConnectedSocketToTheListener) {
  SocketRow client{.proto = "udp",
                   .state = "ESTABLISHED",
                   .local_addr = "10.1.0.1",
                   .remote_addr = "10.1.0.2",
                   .local_port = 50000,
                   .remote_port = 53,
                   .pid = 9,
                   .comm = "resolver"};
  SocketRow server{.proto = "udp6",
                   .state = "",
                   .local_addr = "::",
                   .remote_addr = "::",
                   .local_port = 53,
                   .remote_port = 0,
                   .pid = 30,
                   .comm = "dnsmasq"};
  Graph g = build_graph({vm("a", {"10.1.0.1"}, {client}), vm("dns", {"10.1.0.2"}, {server})});
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].to, "svc:h/dns:udp:53");
  EXPECT_EQ(g.edges[0].proto, "udp");
  EXPECT_EQ(g.edges[0].server.comm, "dnsmasq");
  EXPECT_TRUE(g.edges[0].inferred);  // a listener proves no 4-tuple
}

TEST(TopologyGraph, MappedAddressesMatchTheirIpv4Peers) {
  Graph g = build_graph({
      vm("web", {"10.1.0.1"}, {tcp("10.1.0.1", 40000, "10.1.0.2", 8080, 10, "curl")}),
      vm("api", {"10.1.0.2"},
         {tcp("::", 8080, "::", 0, 20, "java", "LISTEN"),
          tcp("::ffff:10.1.0.2", 8080, "::ffff:10.1.0.1", 40000, 20, "java")}),
  });
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].to, "svc:h/api:tcp:8080");
  EXPECT_EQ(canonical_address("::ffff:10.1.0.2"), "10.1.0.2");
  EXPECT_EQ(canonical_address("fd50:0::3/64"), "fd50::3");
  EXPECT_EQ(canonical_address("not an address"), "");
}

TEST(TopologyGraph, HistoryCountsFramesAndTheDiffNamesWhatWentAway) {
  auto web = [](uint64_t t, bool connected) {
    std::vector<SocketRow> s;
    if (connected) s.push_back(tcp("10.1.0.1", 40000, "10.1.0.2", 5432, 10, "app"));
    return vm("web", {"10.1.0.1"}, s, t);
  };
  auto db = [](uint64_t t, bool connected) {
    std::vector<SocketRow> s = {listener("0.0.0.0", 5432, 20, "postgres")};
    if (connected) s.push_back(tcp("10.1.0.2", 5432, "10.1.0.1", 40000, 20, "postgres"));
    return vm("db", {"10.1.0.2"}, s, t + 5);
  };
  Graph history = build_graph({web(100, true), db(100, true), web(200, true), db(200, true),
                               web(300, false), db(300, false)});
  ASSERT_EQ(history.edges.size(), 1u);
  EXPECT_EQ(history.edges[0].seen.frames, 2u);
  EXPECT_EQ(history.edges[0].seen.first_ns, 100u);
  EXPECT_EQ(history.edges[0].seen.last_ns, 200u);
  EXPECT_EQ(history.services[0].seen.frames, 3u);

  GraphDiff d = diff_graphs(build_graph({web(200, true), db(200, true)}),
                            build_graph({web(300, false), db(300, false)}));
  ASSERT_EQ(d.edges_removed.size(), 1u);
  EXPECT_TRUE(d.edges_added.empty());
  EXPECT_TRUE(d.services_added.empty() && d.services_removed.empty());
  EXPECT_EQ(diff_text(d).substr(0, 2), "- ");
}

TEST(TopologyGraph, TwoConnectionsOfOneProcessAreOneEdgeCountingTwo) {
  Graph g = build_graph({
      vm("web", {"10.1.0.1"},
         {tcp("10.1.0.1", 40000, "10.1.0.2", 5432, 10, "app"),
          tcp("10.1.0.1", 40001, "10.1.0.2", 5432, 10, "app")}),
      vm("db", {"10.1.0.2"},
         {listener("0.0.0.0", 5432, 20, "postgres"),
          tcp("10.1.0.2", 5432, "10.1.0.1", 40000, 21, "postgres"),
          tcp("10.1.0.2", 5432, "10.1.0.1", 40001, 22, "postgres")}),
  });
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].connections, 2u);
  EXPECT_NE(graph_dot(g).find("tcp/5432 x2"), std::string::npos);
  EXPECT_NE(graph_text(g).find("x2"), std::string::npos);
}

TEST(TopologyGraph, GuestBytesInNamesStayValidDot) {
  Graph g = build_graph({vm("a", {"10.1.0.1"}, {listener("0.0.0.0", 80, 3, "\xff\"x\nq")})});
  const std::string dot = graph_dot(g);
  EXPECT_EQ(dot.find('\xff'), std::string::npos);
  EXPECT_NE(dot.find(R"(?\"x\nq[3])"), std::string::npos) << dot;
}

}  // namespace
}  // namespace nfm::topology
