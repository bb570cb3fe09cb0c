// `nfm netstat` against the guest's own /proc/net/{tcp,tcp6,udp,udp6,unix} and
// /proc/PID/fd: every socket the guest lists, with the same addresses, ports,
// state, inode, uid and queues, no extra ones, and each owned by the process
// that holds it. 5.10 (listening_hash, global unix_socket_table), 6.1 and 6.12
// (lhash2 only, per-netns unix table).
//
// The workload's nfm-net holds TCP listeners 7001/[::]7002, an established
// loopback pair 7005<->7001 (9 bytes unread), UDP 7003/[::]7004 and two UNIX
// listeners. The second test adds, from the host through a QEMU port forward,
// a connection nfm-net never accepts: an ESTABLISHED socket without an inode
// in 7001's accept queue (backlog 1, 9 bytes queued), then CLOSE_WAIT when the
// host hangs up. The third asks the reporter for a TIME_WAIT socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "fixture.h"
#include "ground_truth.h"
#include "nfm_cli.h"
#include "workload.h"

namespace {

using nfm::lab::GroundTruth;
using nfm::lab::Guest;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;
namespace workload = nfm::lab::workload;

// Guests of their own: the tests add sockets (a host forward, TIME_WAIT) that other
// programs comparing the guest would see.
const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384, .exclusive = true},
    {.kernel = "6.1-cloud", .ram_mib = 384, .exclusive = true},
    {.kernel = "6.12", .ram_mib = 384, .exclusive = true},
});

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

std::vector<std::string> lines_after_header(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// One row of /proc/net/{tcp,udp}[6], raw: what the guest printed, decoded.
struct ProcInet {
  std::string proto, local_addr, remote_addr;
  unsigned local_port = 0, remote_port = 0;
  int state = 0;
  uint32_t tx_queue = 0, rx_queue = 0, uid = 0;
  uint64_t inode = 0;
  std::string line;
};

std::vector<ProcInet> proc_inet(const GroundTruth& truth, const std::string& proto) {
  std::vector<ProcInet> out;
  for (const std::string& line : lines_after_header(truth.section_or("/proc/net/" + proto))) {
    // "sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ..."
    const auto f = fields_of(line);
    if (f.size() < 10) continue;
    ProcInet r;
    r.proto = proto;
    r.line = line;
    auto endpoint = [](const std::string& ep, std::string& addr, unsigned& port) {
      const size_t colon = ep.find(':');
      addr = nfm::lab::proc_net_address(ep.substr(0, colon));
      port = std::stoul(ep.substr(colon + 1), nullptr, 16);
    };
    endpoint(f[1], r.local_addr, r.local_port);
    endpoint(f[2], r.remote_addr, r.remote_port);
    r.state = std::stoi(f[3], nullptr, 16);
    r.tx_queue = std::stoul(f[4].substr(0, f[4].find(':')), nullptr, 16);
    r.rx_queue = std::stoul(f[4].substr(f[4].find(':') + 1), nullptr, 16);
    r.uid = std::stoul(f[7]);
    r.inode = std::stoull(f[9]);
    out.push_back(r);
  }
  return out;
}

// One row of /proc/net/unix: "Num RefCount Protocol Flags Type St Inode [Path]".
struct ProcUnix {
  uint32_t refcount = 0, flags = 0;
  int type = 0, state = 0;
  uint64_t inode = 0;
  std::string path, line;
};

std::vector<ProcUnix> proc_unix(const GroundTruth& truth) {
  std::vector<ProcUnix> out;
  for (const std::string& line : lines_after_header(truth.section_or("/proc/net/unix"))) {
    const auto f = fields_of(line);
    if (f.size() < 7) continue;
    ProcUnix r;
    r.line = line;
    r.refcount = std::stoul(f[1], nullptr, 16);
    r.flags = std::stoul(f[3], nullptr, 16);
    r.type = std::stoi(f[4], nullptr, 16);
    r.state = std::stoi(f[5], nullptr, 16);
    r.inode = std::stoull(f[6]);
    if (f.size() > 7) r.path = f[7];
    out.push_back(r);
  }
  return out;
}

// socket inode -> the lowest pid holding it, from /proc/PID/fd "socket:[INO]".
std::map<uint64_t, int> socket_holders(const GroundTruth& truth) {
  std::map<uint64_t, int> out;
  for (const auto& [pid, p] : truth.processes)  // by pid: the first one wins
    for (const auto& [fd, info] : p.fds)
      if (info.target.rfind("socket:[", 0) == 0)
        out.emplace(std::stoull(info.target.substr(8)), pid);
  return out;
}

std::string inet_key(const std::string& proto, const std::string& la, unsigned lp,
                     const std::string& ra, unsigned rp) {
  return proto + " " + la + ":" + std::to_string(lp) + " " + ra + ":" + std::to_string(rp);
}

// Compares `nfm netstat --json` rows with the guest's /proc view; returns every
// difference (empty when they agree).
std::vector<std::string> compare(const json& rows, const GroundTruth& truth) {
  std::vector<std::string> diffs;
  const auto holders = socket_holders(truth);
  std::map<std::string, const json*> inet;
  std::map<uint64_t, const json*> unix_by_inode;
  for (const json& r : rows) {
    const std::string proto = r.at("proto");
    if (proto == "unix") {
      if (!unix_by_inode.emplace(r.at("inode").get<uint64_t>(), &r).second)
        diffs.push_back("two unix rows with inode " + r.at("inode").dump());
      continue;
    }
    const std::string key = inet_key(proto, r.at("local_addr"), r.at("local_port"),
                                     r.at("remote_addr"), r.at("remote_port"));
    if (!inet.emplace(key, &r).second) diffs.push_back("two rows for " + key);
  }
  auto check_owner = [&](const json& r, uint64_t inode, const std::string& what) {
    auto it = holders.find(inode);
    const int want = inode && it != holders.end() ? it->second : 0;
    const int got = r.at("pid").is_null() ? 0 : r.at("pid").get<int>();
    if (got != want)
      diffs.push_back(what + ": owner pid nfm " + std::to_string(got) + ", guest " +
                      std::to_string(want));
    else if (want && r.at("comm") != truth.processes.at(want).comm)
      diffs.push_back(what + ": owner comm " + r.at("comm").dump());
  };

  size_t truth_inet = 0;
  for (const char* proto : {"tcp", "tcp6", "udp", "udp6"}) {
    for (const ProcInet& t : proc_inet(truth, proto)) {
      ++truth_inet;
      const std::string key =
          inet_key(proto, t.local_addr, t.local_port, t.remote_addr, t.remote_port);
      auto it = inet.find(key);
      if (it == inet.end()) {
        diffs.push_back("missing " + key + " (" + t.line + ")");
        continue;
      }
      const json& r = *it->second;
      auto check = [&](const char* what, uint64_t got, uint64_t want) {
        if (got != want)
          diffs.push_back(key + " " + what + ": nfm " + std::to_string(got) + ", guest " +
                          std::to_string(want));
      };
      check("state", r.at("state_code").get<int>(), t.state);
      check("inode", r.at("inode"), t.inode);
      check("uid", r.at("uid"), t.uid);
      check("rx_queue", r.at("rx_queue"), t.rx_queue);
      check("tx_queue", r.at("tx_queue"), t.tx_queue);
      check_owner(r, t.inode, key);
      inet.erase(it);
    }
  }
  for (const auto& [key, r] : inet) diffs.push_back("extra " + key);

  for (const ProcUnix& t : proc_unix(truth)) {
    auto it = unix_by_inode.find(t.inode);
    if (it == unix_by_inode.end()) {
      diffs.push_back("missing unix " + t.line);
      continue;
    }
    const json& r = *it->second;
    const std::string what = "unix " + std::to_string(t.inode);
    if (r.at("path") != t.path) diffs.push_back(what + " path " + r.at("path").dump());
    if (r.at("type_code") != t.type) diffs.push_back(what + " type " + r.at("type_code").dump());
    if (r.at("state_code") != t.state) diffs.push_back(what + " st " + r.at("state_code").dump());
    if (r.at("flags") != t.flags) diffs.push_back(what + " flags " + r.at("flags").dump());
    if (r.at("refcount") != t.refcount)
      diffs.push_back(what + " refcount " + r.at("refcount").dump() + ", guest " +
                      std::to_string(t.refcount));
    check_owner(r, t.inode, what);
    unix_by_inode.erase(it);
  }
  for (const auto& [inode, r] : unix_by_inode) diffs.push_back("extra unix " + r->dump());
  std::fprintf(stderr, "netstat: %zu inet and %zu unix sockets in the guest's view\n", truth_inet,
               proc_unix(truth).size());
  return diffs;
}

// A fresh truth, then nfm on the paused guest.
json netstat_paused(Guest* g) {
  EXPECT_TRUE(g->request_truth().ok());
  EXPECT_TRUE(g->pause().ok());
  CliResult r = run_nfm({"netstat", "--json", "qemu:" + std::to_string(g->pid())});
  EXPECT_TRUE(g->resume().ok());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  return r.status == 0 ? json::parse(r.out) : json::array();
}

const json* find_row(const json& rows, const std::string& proto, const std::string& local,
                     unsigned port, const std::string& remote = "", unsigned rport = 0) {
  for (const json& r : rows)
    if (r.at("proto") == proto && r.at("local_addr") == local && r.at("local_port") == port &&
        (remote.empty() || (r.at("remote_addr") == remote && r.at("remote_port") == rport)))
      return &r;
  return nullptr;
}

const json* find_unix(const json& rows, const std::string& path) {
  for (const json& r : rows)
    if (r.at("proto") == "unix" && r.at("path") == path) return &r;
  return nullptr;
}

class Netstat : public testing::TestWithParam<std::string> {};

TEST_P(Netstat, MatchesProcNetAndFdOwners) {
  NFM_LAB_GUEST(g, GetParam());
  const json rows = netstat_paused(g);
  const GroundTruth& truth = g->truth();
  for (const std::string& d : compare(rows, truth)) ADD_FAILURE() << d;

  // The workload's own sockets, each held by nfm-net.
  const auto* net = truth.find_process(workload::net_comm);
  ASSERT_NE(net, nullptr);
  std::set<uint64_t> net_sockets;
  for (const auto& [fd, info] : net->fds)
    if (info.target.rfind("socket:[", 0) == 0)
      net_sockets.insert(std::stoull(info.target.substr(8)));
  EXPECT_EQ(net_sockets.size(), 8u);  // 2 listeners, 2 ends, 2 UDP, 2 UNIX
  const json* expected[] = {
      find_row(rows, "tcp", "0.0.0.0", workload::tcp4_listen_port),
      find_row(rows, "tcp6", "::", workload::tcp6_listen_port),
      find_row(rows, "tcp", "127.0.0.1", workload::client_port, "127.0.0.1",
               workload::tcp4_listen_port),
      find_row(rows, "tcp", "127.0.0.1", workload::tcp4_listen_port, "127.0.0.1",
               workload::client_port),
      find_row(rows, "udp", "0.0.0.0", workload::udp4_port),
      find_row(rows, "udp6", "::", workload::udp6_port),
      find_unix(rows, std::string(workload::unix_path)),
      find_unix(rows, std::string(workload::unix_abstract)),
  };
  for (const json* r : expected) {
    ASSERT_NE(r, nullptr);
    SCOPED_TRACE(r->dump());
    EXPECT_EQ(r->at("pid"), net->pid);
    EXPECT_EQ(r->at("comm"), workload::net_comm);
    EXPECT_TRUE(net_sockets.count(r->at("inode").get<uint64_t>()));
  }
  EXPECT_EQ(expected[0]->at("state"), "LISTEN");
  EXPECT_EQ(expected[1]->at("state"), "LISTEN");
  EXPECT_EQ(expected[2]->at("state"), "ESTABLISHED");
  EXPECT_EQ(expected[3]->at("state"), "ESTABLISHED");
  EXPECT_EQ(expected[3]->at("rx_queue"), 9);  // "nfm-hello", never read
  EXPECT_EQ(expected[4]->at("state"), "");
  EXPECT_EQ(expected[6]->at("state"), "LISTENING");
  EXPECT_EQ(expected[6]->at("type"), "STREAM");
  EXPECT_EQ(expected[7]->at("state"), "LISTENING");

  // The netstat-like table and the filters.
  CliResult text = run_nfm({"netstat", "qemu:" + std::to_string(g->pid())});
  ASSERT_EQ(text.status, 0) << text.err;
  const std::string owner = std::to_string(net->pid) + "/nfm-net";
  EXPECT_NE(text.out.find("0.0.0.0:7001"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(":::7002"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(owner), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("@nfm-abstract"), std::string::npos) << text.out;
  CliResult udp = run_nfm({"netstat", "--udp", "--json", "qemu:" + std::to_string(g->pid())});
  ASSERT_EQ(udp.status, 0) << udp.err;
  for (const json& r : json::parse(udp.out))
    EXPECT_TRUE(r.at("proto") == "udp" || r.at("proto") == "udp6") << r.dump();
}

// A free TCP port on the host's loopback.
int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
      getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) < 0) {
    close(s);
    return -1;
  }
  close(s);
  return ntohs(a.sin_port);
}

const ProcInet* find_proc(const std::vector<ProcInet>& rows, const std::string& remote, int state) {
  for (const ProcInet& r : rows)
    if (r.local_port == workload::tcp4_listen_port && r.remote_addr == remote && r.state == state)
      return &r;
  return nullptr;
}

TEST_P(Netstat, UnacceptedConnectionThenCloseWait) {
  NFM_LAB_GUEST(g, GetParam());
  const int port = free_port();
  ASSERT_GT(port, 0);
  auto fwd = g->hmp("hostfwd_add n0 tcp:127.0.0.1:" + std::to_string(port) +
                    "-:" + std::to_string(workload::tcp4_listen_port));
  ASSERT_TRUE(fwd.ok()) << fwd.error().to_string();
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(write(s, "host-data", 9), 9);

  // QEMU's user network answers the host at once and reaches the guest a little later:
  // wait until the guest itself lists the connection, then compare on that view.
  const std::string slirp_host = "10.0.2.2";
  bool seen = false;
  for (int i = 0; i < 60 && !seen; ++i) {
    ASSERT_TRUE(g->request_truth().ok());
    const std::vector<ProcInet> tcp = proc_inet(g->truth(), "tcp");
    const ProcInet* r = find_proc(tcp, slirp_host, 1);
    seen = r && r->rx_queue == 9;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(seen) << g->truth().section_or("/proc/net/tcp");
  json rows = netstat_paused(g);
  for (const std::string& d : compare(rows, g->truth())) ADD_FAILURE() << d;
  const json* embryo = nullptr;
  for (const json& r : rows)
    if (r.at("proto") == "tcp" && r.at("remote_addr") == slirp_host) embryo = &r;
  ASSERT_NE(embryo, nullptr);
  EXPECT_EQ(embryo->at("state"), "ESTABLISHED");
  EXPECT_EQ(embryo->at("inode"), 0);
  EXPECT_TRUE(embryo->at("pid").is_null());
  EXPECT_EQ(embryo->at("rx_queue"), 9);
  const json* listener = find_row(rows, "tcp", "0.0.0.0", workload::tcp4_listen_port);
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->at("rx_queue"), 1);  // the accept backlog

  // The host hangs up: the unaccepted socket goes CLOSE_WAIT.
  close(s);
  seen = false;
  for (int i = 0; i < 60 && !seen; ++i) {
    ASSERT_TRUE(g->request_truth().ok());
    seen = find_proc(proc_inet(g->truth(), "tcp"), slirp_host, 8) != nullptr;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(seen) << g->truth().section_or("/proc/net/tcp");
  rows = netstat_paused(g);
  for (const std::string& d : compare(rows, g->truth())) ADD_FAILURE() << d;
  bool close_wait = false;
  for (const json& r : rows)
    close_wait |= r.at("remote_addr") == slirp_host && r.at("state") == "CLOSE_WAIT";
  EXPECT_TRUE(close_wait);
}

// The reporter's "timewait" command leaves a loopback TIME_WAIT socket: an
// inet_timewait_sock in ehash, read by its common part (no inode, no owner).
TEST_P(Netstat, TimeWait) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->send_command("timewait").ok());
  json rows = netstat_paused(g);  // its truth comes after the command
  for (const std::string& d : compare(rows, g->truth())) ADD_FAILURE() << d;
  size_t truth_tw = 0;
  for (const ProcInet& t : proc_inet(g->truth(), "tcp")) truth_tw += t.state == 6;
  ASSERT_GE(truth_tw, 1u) << g->truth().section_or("/proc/net/tcp");
  const json* tw = nullptr;
  for (const json& r : rows)
    if (r.at("state") == "TIME_WAIT") tw = &r;
  ASSERT_NE(tw, nullptr);
  EXPECT_EQ(tw->at("proto"), "tcp");
  EXPECT_EQ(tw->at("local_addr"), "127.0.0.1");
  EXPECT_EQ(tw->at("remote_addr"), "127.0.0.1");
  EXPECT_EQ(tw->at("inode"), 0);
  EXPECT_TRUE(tw->at("pid").is_null());
}

INSTANTIATE_TEST_SUITE_P(Guests, Netstat, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
