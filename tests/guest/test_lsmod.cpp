// `nfm lsmod` against the guest's own /proc/modules, line for line: name, size,
// refcount, users, state, base address (the reporter runs as root, so /proc shows
// real addresses) and taints. 5.10 and 6.1 (core_layout) and 6.12 (mem[]).
// The workload loads `dummy` and the NIC driver with its dependencies
// (virtio_net -> net_failover -> failover), so "used by" lists are not empty.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "fixture.h"
#include "nfm_cli.h"

namespace {

using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
});

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string f;
  while (in >> f) out.push_back(f);
  return out;
}

class Lsmod : public testing::TestWithParam<std::string> {};

TEST_P(Lsmod, MatchesProcModulesExactly) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  ASSERT_TRUE(g->request_truth().ok());
  const std::vector<std::string> truth = lines_of(g->truth().section_or("/proc/modules"));
  ASSERT_THAT(g->truth().modules, testing::Contains("dummy"));

  CliResult text = run_nfm({"lsmod", target});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_EQ(text.err, "");
  EXPECT_EQ(lines_of(text.out), truth);

  CliResult r = run_nfm({"lsmod", "--json", target});
  ASSERT_EQ(r.status, 0) << r.err;
  const json rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), truth.size());
  for (size_t i = 0; i < truth.size(); ++i) {
    // "name size refcount users state 0xbase [(taints)]"
    const std::vector<std::string> f = fields_of(truth[i]);
    ASSERT_GE(f.size(), 6u) << truth[i];
    const json& row = rows[i];
    SCOPED_TRACE(truth[i]);
    EXPECT_EQ(row.at("name"), f[0]);
    EXPECT_EQ(row.at("size").get<uint64_t>(), std::stoull(f[1]));
    EXPECT_EQ(row.at("refcount").get<int64_t>(), std::stoll(f[2]));
    std::vector<std::string> users;
    std::istringstream in(f[3]);
    for (std::string u; std::getline(in, u, ',');)
      if (!u.empty() && u != "-" && u != "[permanent]") users.push_back(u);
    EXPECT_EQ(row.at("used_by").get<std::vector<std::string>>(), users);
    EXPECT_EQ(row.at("state"), f[4]);
    EXPECT_NE(f[5], "0x0000000000000000") << "the guest hid module addresses";
    EXPECT_EQ(std::stoull(row.at("base").get<std::string>(), nullptr, 16),
              std::stoull(f[5], nullptr, 16));
    EXPECT_EQ(row.value("taints", ""), f.size() > 6 ? f[6].substr(1, f[6].size() - 2) : "");
  }

  size_t with_users = 0;
  for (const json& row : rows) with_users += !row.at("used_by").empty();
  std::fprintf(stderr, "lsmod %s: %zu modules, %zu with users\n", GetParam().c_str(), rows.size(),
               with_users);

  auto dummy =
      std::find_if(rows.begin(), rows.end(), [](const json& r) { return r.at("name") == "dummy"; });
  ASSERT_NE(dummy, rows.end());
  EXPECT_EQ(dummy->at("state"), "Live");
  EXPECT_EQ(dummy->at("refcount"), 0);
  EXPECT_GT(dummy->at("size").get<uint64_t>(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Guests, Lsmod, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
