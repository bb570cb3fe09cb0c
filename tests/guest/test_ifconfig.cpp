// `nfm ifconfig` against the guest's own view of its interfaces: /proc/net/dev (all
// 16 counters, in list order), getifaddrs() (index, MAC, dev_get_flags() flags, IPv4
// and IPv6 addresses), /proc/net/if_inet6 and /sys/class/net/NAME/mtu.
// lo (per-cpu lstats), dummy0 (the dummy module's lstats), and eth0 as virtio-net
// (per-queue counters in the module's private virtnet_info, found through module
// BTF) on 6.1 and 6.12 and as e1000 (dev->stats) on 5.10. 5.10 keeps no module BTF,
// so its virtio-net counters are out of reach (nfm says so). The reporter sends a
// datagram over lo and one out of dummy0 before every view (and one out of eth0
// at boot), so the counters are not zero; the guest is paused while nfm reads.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "features/interfaces/interfaces.h"
#include "fixture.h"
#include "kernel/kernel.h"
#include "host/target.h"
#include "nfm_cli.h"

namespace {

using nfm::lab::Guest;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

// Every lab guest boots with no_timer_check (guest.cpp); the others are the pool's.
const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384, .nic = "e1000", .name = "5.10-e1000"},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
});

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

// What the guest says about one interface.
struct TruthInterface {
  std::vector<uint64_t> counters;  // the 16 /proc/net/dev columns
  int ifindex = -1;
  std::string mac;
  uint32_t flags = 0;
  uint32_t mtu = 0;
  std::vector<std::string> ipv4, ipv6;
  std::set<std::string> if_inet6;  // from /proc/net/if_inet6
};

struct Truth {
  std::vector<std::string> order;  // /proc/net/dev order
  std::map<std::string, TruthInterface> by_name;
};

std::string ipv6_from_hex(const std::string& hex) {
  uint8_t bytes[16];
  for (int i = 0; i < 16; ++i) bytes[i] = std::stoi(hex.substr(i * 2, 2), nullptr, 16);
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, bytes, text, sizeof text);
  return text;
}

Truth parse_truth(const nfm::lab::GroundTruth& g) {
  Truth t;
  // "  eth0: 1234 5 0 ..." after two header lines.
  for (const std::string& l : lines(g.section_or("/proc/net/dev"))) {
    const auto colon = l.find(':');
    if (colon == l.npos || l.find('|') != l.npos) continue;
    const std::string name = words(l.substr(0, colon)).at(0);
    TruthInterface& i = t.by_name[name];
    for (const std::string& w : words(l.substr(colon + 1))) i.counters.push_back(std::stoull(w));
    t.order.push_back(name);
  }
  // "eth0 index=2 link 52:54:00:12:34:56 flags=0x11043", "eth0 inet 10.0.2.15/24".
  for (const std::string& l : lines(g.section_or("ifaddrs"))) {
    const std::vector<std::string> w = words(l);
    if (w.size() < 3) continue;
    TruthInterface& i = t.by_name[w[0]];
    if (w[1].rfind("index=", 0) == 0 && w.size() >= 5) {
      i.ifindex = std::stoi(w[1].substr(6));
      i.mac = w[3] == "-" ? "" : w[3];
      i.flags = static_cast<uint32_t>(std::stoul(w[4].substr(6), nullptr, 16));
    } else if (w[1] == "inet") {
      i.ipv4.push_back(w[2]);
    } else if (w[1] == "inet6") {
      i.ipv6.push_back(w[2]);
    }
  }
  // "fd000000000000000000000000000015 02 40 00 80     eth0"
  for (const std::string& l : lines(g.section_or("/proc/net/if_inet6"))) {
    const std::vector<std::string> w = words(l);
    if (w.size() < 6) continue;
    t.by_name[w[5]].if_inet6.insert(ipv6_from_hex(w[0]) + "/" +
                                    std::to_string(std::stoi(w[2], nullptr, 16)));
  }
  for (auto& [name, i] : t.by_name) {
    const std::string mtu = g.section_or("/sys/class/net/" + name + "/mtu");
    if (!mtu.empty()) i.mtu = static_cast<uint32_t>(std::stoul(mtu));
  }
  return t;
}

const char* const kCounterKeys[16] = {
    "rx_bytes",       "rx_packets",      "rx_errors",         "rx_dropped",
    "rx_fifo_errors", "rx_frame_errors", "rx_compressed",     "multicast",
    "tx_bytes",       "tx_packets",      "tx_errors",         "tx_dropped",
    "tx_fifo_errors", "collisions",      "tx_carrier_errors", "tx_compressed"};

// Every difference between nfm's rows and the guest's view (empty when they agree).
std::vector<std::string> compare(const json& rows, const Truth& truth) {
  std::vector<std::string> diffs;
  std::vector<std::string> names;
  for (const json& r : rows) names.push_back(r.at("name"));
  if (names != truth.order) {
    std::string got, want;
    for (const auto& n : names) got += n + " ";
    for (const auto& n : truth.order) want += n + " ";
    diffs.push_back("interfaces: nfm [" + got + "], /proc/net/dev [" + want + "]");
  }
  for (const json& r : rows) {
    const std::string name = r.at("name");
    auto it = truth.by_name.find(name);
    if (it == truth.by_name.end()) continue;
    const TruthInterface& t = it->second;
    auto check = [&](const std::string& what, const auto& got, const auto& want) {
      if (got == want) return;
      std::ostringstream s;
      s << name << " " << what << ": nfm " << ::testing::PrintToString(got) << ", guest "
        << ::testing::PrintToString(want);
      diffs.push_back(s.str());
    };
    if (t.counters.size() == 16) {
      for (int k = 0; k < 16; ++k)
        check(kCounterKeys[k], r.at(kCounterKeys[k]).get<uint64_t>(), t.counters[k]);
    } else {
      diffs.push_back(name + ": no /proc/net/dev line");
    }
    check("ifindex", r.at("ifindex").get<int>(), t.ifindex);
    check("mac", r.at("mac").get<std::string>(), t.mac);
    check("flags", r.at("flags").get<uint32_t>(), t.flags);
    check("up", r.at("up").get<bool>(), (t.flags & 1) != 0);
    check("mtu", r.at("mtu").get<uint32_t>(), t.mtu);
    check("ipv4", r.at("ipv4").get<std::vector<std::string>>(), t.ipv4);
    check("ipv6 (getifaddrs)", r.at("ipv6").get<std::vector<std::string>>(), t.ipv6);
    const auto v6 = r.at("ipv6").get<std::vector<std::string>>();
    check("ipv6 (/proc/net/if_inet6)", std::set<std::string>(v6.begin(), v6.end()), t.if_inet6);
  }
  return diffs;
}

class Ifconfig : public testing::TestWithParam<std::string> {};

TEST_P(Ifconfig, MatchesTheGuestsOwnView) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  const bool e1000 = g->options().nic == "e1000";
  // A packet the guest sends or receives on its own (IPv6 router solicitations
  // back off exponentially but never stop) can land between the guest's view and
  // the pause: then the counters moved, and a fresh look must agree.
  constexpr int kAttempts = 3;
  json rows;
  Truth truth;
  std::vector<std::string> diffs;
  int attempts = 0;
  while (attempts < kAttempts) {
    ++attempts;
    ASSERT_TRUE(g->request_truth().ok());
    ASSERT_TRUE(g->pause().ok());
    CliResult r = run_nfm({"ifconfig", "--json", target});
    // The library too, in the same pause: its /proc/net/dev lines, byte for byte.
    std::vector<std::string> own_lines;
    {
      auto memory = nfm::open_target(target);
      ASSERT_TRUE(memory.ok()) << memory.error().to_string();
      auto k = nfm::Kernel::attach(std::move(memory).value());
      ASSERT_TRUE(k.ok()) << k.error().to_string();
      auto reader = nfm::InterfaceReader::create(**k);
      ASSERT_TRUE(reader.ok()) << reader.error().to_string();
      auto list = reader->list();
      ASSERT_TRUE(list.ok()) << list.error().to_string();
      for (const nfm::InterfaceRow& row : list->rows)
        own_lines.push_back(nfm::proc_net_dev_line(row));
      // Module types: virtio_net's private struct on 6.1+, none at all on 5.10.
      auto virtio = (*k)->module_types("virtio_net");
      if ((*k)->types().has_member("module", "btf_data") && !e1000) {
        ASSERT_TRUE(virtio.ok()) << virtio.error().to_string();
        EXPECT_TRUE(virtio->find_struct("virtnet_info").ok());
        EXPECT_TRUE(virtio->find_struct("net_device").ok());  // from the base
      } else if (!(*k)->symbol("btf_modules")) {
        ASSERT_FALSE(virtio.ok());
        EXPECT_EQ(virtio.error().code, nfm::Errc::unsupported);
      }
    }
    ASSERT_TRUE(g->resume().ok());
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    rows = json::parse(r.out);
    truth = parse_truth(g->truth());
    diffs = compare(rows, truth);
    std::vector<std::string> proc_lines = lines(g->truth().section_or("/proc/net/dev"));
    if (proc_lines.size() >= 2) proc_lines.erase(proc_lines.begin(), proc_lines.begin() + 2);
    if (own_lines != proc_lines) {
      diffs.push_back("/proc/net/dev lines differ:");
      for (const auto& l : own_lines) diffs.push_back("  nfm:   " + l);
      for (const auto& l : proc_lines) diffs.push_back("  guest: " + l);
    }
    if (diffs.empty()) break;
    for (const auto& d : diffs) std::fprintf(stderr, "attempt %d: %s\n", attempts, d.c_str());
  }
  EXPECT_THAT(diffs, testing::IsEmpty());
  std::fprintf(stderr, "ifconfig %s: %zu interfaces, %d attempt(s)\n", GetParam().c_str(),
               rows.size(), attempts);

  // The interfaces the lab sets up, with the drivers' own counters behind them.
  std::map<std::string, const json*> by_name;
  for (const json& r : rows) by_name[r.at("name")] = &r;
  ASSERT_TRUE(by_name.count("lo") && by_name.count("eth0") && by_name.count("dummy0"));
  const json& lo = *by_name["lo"];
  const json& eth0 = *by_name["eth0"];
  const json& dummy0 = *by_name["dummy0"];
  for (const json* r : {&lo, &eth0, &dummy0}) {
    SCOPED_TRACE(r->at("name").get<std::string>());
    EXPECT_FALSE(r->contains("stats_exact"));
    EXPECT_TRUE(r->at("up").get<bool>());
  }
  EXPECT_EQ(lo.at("stats_source"), "loopback_get_stats64");
  EXPECT_EQ(dummy0.at("stats_source"), "dummy_get_stats64");
  EXPECT_EQ(eth0.at("stats_source"), e1000 ? "dev->stats" : "virtnet_stats");
  EXPECT_GT(lo.at("rx_packets").get<uint64_t>(), 0u);
  EXPECT_GT(lo.at("rx_bytes").get<uint64_t>(), 0u);
  EXPECT_GT(dummy0.at("tx_packets").get<uint64_t>(), 0u);
  EXPECT_GT(eth0.at("rx_packets").get<uint64_t>(), 0u);
  EXPECT_GT(eth0.at("tx_packets").get<uint64_t>(), 0u);
  EXPECT_EQ(eth0.at("ipv4"), json::array({"10.0.2.15/24"}));
  EXPECT_THAT(eth0.at("ipv6").get<std::vector<std::string>>(), testing::Contains("fd00::15/64"));
  EXPECT_THAT(eth0.at("ipv6").get<std::vector<std::string>>(),
              testing::Contains(testing::StartsWith("fe80::")));
  EXPECT_EQ(dummy0.at("ipv4"), json::array({"192.168.77.1/24"}));
  EXPECT_EQ(lo.at("mac"), "00:00:00:00:00:00");
  std::fprintf(stderr, "  lo %llu/%llu pkts, eth0 rx %llu tx %llu, dummy0 tx %llu\n",
               (unsigned long long)lo.at("rx_packets").get<uint64_t>(),
               (unsigned long long)lo.at("tx_packets").get<uint64_t>(),
               (unsigned long long)eth0.at("rx_packets").get<uint64_t>(),
               (unsigned long long)eth0.at("tx_packets").get<uint64_t>(),
               (unsigned long long)dummy0.at("tx_packets").get<uint64_t>());

  // The default output: one block per interface, ifconfig-like.
  CliResult text = run_nfm({"ifconfig", target});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_EQ(text.err, "");
  EXPECT_THAT(text.out, testing::HasSubstr("eth0: flags="));
  EXPECT_THAT(text.out, testing::HasSubstr("inet 10.0.2.15/24"));
  EXPECT_THAT(text.out, testing::HasSubstr("inet6 fd00::15/64"));
  EXPECT_THAT(text.out, testing::HasSubstr("ether " + eth0.at("mac").get<std::string>()));
}

INSTANTIATE_TEST_SUITE_P(Guests, Ifconfig, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
