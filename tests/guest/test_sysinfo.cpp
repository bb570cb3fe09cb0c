// `nfm uptime`, `nfm meminfo` and `nfm cpuinfo` against the guest's own
// /proc/uptime, /proc/loadavg, /proc/stat, /proc/meminfo and /proc/cpuinfo on
// 5.10, 6.1-cloud and 6.12 kernels.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "fixture.h"
#include "nfm_cli.h"

namespace {

using nfm::lab::GroundTruth;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384, .cpus = 2},  // one cpu_info per CPU
});

json run_json(const std::vector<std::string>& args) {
  CliResult r = run_nfm(args);
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return json();
  return json::parse(r.out);
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> w;
  for (std::string s; in >> s;) w.push_back(s);
  return w;
}

// "Key:   value" lines (/proc/meminfo, one /proc/cpuinfo block) -> key -> value.
std::map<std::string, std::string> key_values(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(" \t"));
      s.erase(s.find_last_not_of(" \t") + 1);
      return s;
    };
    kv[trim(line.substr(0, colon))] = trim(line.substr(colon + 1));
  }
  return kv;
}

class Sysinfo : public testing::TestWithParam<std::string> {};

// The kernel's load average update (calc_load, kernel/sched/loadavg.c), every 5 s
// (LOAD_FREQ) in 11-bit fixed point: load = load * e + active * (1 - e), e = EXP_n / 2048.
constexpr double kLoadDecay[3] = {1884 / 2048.0, 2014 / 2048.0, 2037 / 2048.0};

TEST_P(Sysinfo, UptimeMatchesTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  // The guest's own look comes before the pause, so the clocks and the load average
  // may move in between (a paused guest cannot report). Compare only what the kernel
  // guarantees between two instants of its own time, never a retried "same" read.
  ASSERT_TRUE(g->request_truth().ok());
  ASSERT_TRUE(g->pause().ok());
  const json u = run_json({"uptime", "--json", target});
  // A paused guest holds still: a second read is identical.
  EXPECT_EQ(run_json({"uptime", "--json", target}), u);
  ASSERT_TRUE(g->resume().ok());
  const GroundTruth& truth = g->truth();

  // Uptime is monotonic. Ours is the timekeeper's last update (a tick is at most
  // 10 ms), taken after the guest's own read.
  const double guest_uptime = std::stod(words(truth.section_or("/proc/uptime")).at(0));
  const double ours = u.at("uptime_s").get<double>();
  EXPECT_GE(ours, guest_uptime - 0.02);

  // Load averages: within the guest time between the two reads at most k updates
  // happened, each moving the average toward the number of active tasks (0..all
  // tasks): after k of them it lies in [L e^k, L e^k + tasks (1 - e^k)]; with none it
  // is unchanged. Slack: /proc's two decimals and the fixed point's rounding per update.
  const std::vector<std::string> loadavg = words(truth.section_or("/proc/loadavg"));
  ASSERT_GE(loadavg.size(), 3u);
  const double elapsed = std::max(0.0, ours - guest_uptime);
  const int updates = static_cast<int>(std::floor(elapsed / 5.0)) + 1;
  const double tasks = static_cast<double>(std::max(truth.threads.size(), truth.processes.size()));
  const char* names[3] = {"load1", "load5", "load15"};
  for (int i = 0; i < 3; i++) {
    const double theirs = std::stod(loadavg[i]);
    const double mine = u.at(names[i]).get<double>();
    const double decay = std::pow(kLoadDecay[i], updates);
    const double slack = 0.01 + updates * 0.001;
    EXPECT_GE(mine, std::min(theirs, theirs * decay) - slack)
        << names[i] << ": guest " << loadavg[i] << ", " << updates << " update(s) at most";
    EXPECT_LE(mine, std::max(theirs, theirs * decay + tasks * (1 - decay)) + slack)
        << names[i] << ": guest " << loadavg[i] << ", " << updates << " update(s) at most";
  }

  // /proc/stat btime is the same getboottime64(): exact.
  std::istringstream stat(truth.section_or("/proc/stat"));
  int64_t btime = -1;
  for (std::string line; std::getline(stat, line);)
    if (line.rfind("btime ", 0) == 0) btime = std::stoll(line.substr(6));
  EXPECT_EQ(u.at("boot_time").get<int64_t>(), btime);

  // jiffies advance at HZ (100..1000) while the guest runs: measured over at least a
  // second of the guest's own time (the host may be slow, or another program may hold
  // a shared guest paused, so no host-time sleep decides it).
  json later;
  for (int polls = 0;; polls++) {
    later = run_json({"uptime", "--json", target});
    ASSERT_TRUE(later.is_object());
    if (later.at("uptime_s").get<double>() - ours >= 1.0) break;
    ASSERT_LT(polls, 3000) << "the guest's clock does not advance";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const double seconds = later.at("uptime_s").get<double>() - ours;
  const double hz =
      (later.at("jiffies").get<uint64_t>() - u.at("jiffies").get<uint64_t>()) / seconds;
  EXPECT_GE(hz, 90);
  EXPECT_LE(hz, 1100);
  CliResult text = run_nfm({"uptime", target});
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("load average:"), std::string::npos) << text.out;
}

TEST_P(Sysinfo, MeminfoMatchesTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->request_truth().ok());
  ASSERT_TRUE(g->pause().ok());
  json m = run_json({"meminfo", "--json", "qemu:" + std::to_string(g->pid())});
  ASSERT_TRUE(g->resume().ok());
  auto kv = key_values(g->truth().section_or("/proc/meminfo"));
  auto kb = [&](const char* key) { return std::stoull(words(kv.at(key)).at(0)); };
  const uint64_t total = kb("MemTotal");
  EXPECT_EQ(m.at("total_kb").get<uint64_t>(), total);
  EXPECT_EQ(m.at("swap_total_kb").get<uint64_t>(), kb("SwapTotal"));
  EXPECT_EQ(m.at("swap_free_kb").get<uint64_t>(), kb("SwapFree"));
  // These move between the guest's look and the pause (the reporter runs,
  // allocates and writes): within 1% of MemTotal.
  const double tolerance = total / 100.0;
  const std::pair<const char*, const char*> moving[] = {{"free_kb", "MemFree"},
                                                        {"available_kb", "MemAvailable"},
                                                        {"buffers_kb", "Buffers"},
                                                        {"cached_kb", "Cached"}};
  for (const auto& [ours, theirs] : moving) {
    const double diff = std::fabs(double(m.at(ours).get<uint64_t>()) - double(kb(theirs)));
    EXPECT_LE(diff, tolerance) << ours << " " << m.at(ours) << " vs " << theirs << " "
                               << kb(theirs);
  }
  EXPECT_GT(m.at("free_kb").get<uint64_t>(), 0u);
  CliResult text = run_nfm({"meminfo", "qemu:" + std::to_string(g->pid())});
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("MemTotal:"), std::string::npos) << text.out;
  EXPECT_GT(m.at("cached_kb").get<uint64_t>(), 0u);
}

TEST_P(Sysinfo, CpuinfoMatchesTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  json cpus = run_json({"cpuinfo", "--json", "qemu:" + std::to_string(g->pid())});
  // /proc/cpuinfo: one blank-line-separated block per CPU.
  std::vector<std::map<std::string, std::string>> blocks;
  const std::string text = g->truth().section_or("/proc/cpuinfo");
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find("\n\n", at);
    if (end == std::string::npos) end = text.size();
    auto kv = key_values(text.substr(at, end - at));
    if (kv.count("processor")) blocks.push_back(std::move(kv));
    at = end + 2;
  }
  ASSERT_FALSE(blocks.empty());
  CliResult plain = run_nfm({"cpuinfo", "qemu:" + std::to_string(g->pid())});
  EXPECT_EQ(plain.status, 0) << plain.err;
  EXPECT_NE(plain.out.find("model name\t: " + blocks[0]["model name"]), std::string::npos)
      << plain.out;
  ASSERT_EQ(cpus.size(), blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto& want = blocks[i];
    const json& c = cpus[i];
    SCOPED_TRACE("cpu " + want["processor"]);
    EXPECT_EQ(std::to_string(c.at("processor").get<uint32_t>()), want["processor"]);
    EXPECT_EQ(c.at("vendor").get<std::string>(), want["vendor_id"]);
    EXPECT_EQ(std::to_string(c.at("family").get<uint32_t>()), want["cpu family"]);
    EXPECT_EQ(std::to_string(c.at("model").get<uint32_t>()), want["model"]);
    EXPECT_EQ(std::to_string(c.at("stepping").get<uint32_t>()), want["stepping"]);
    EXPECT_EQ(c.at("model_name").get<std::string>(), want["model name"]);
    if (want.count("cache size"))
      EXPECT_EQ(std::to_string(c.at("cache_kb").get<int64_t>()) + " KB", want["cache size"]);
    else
      EXPECT_TRUE(c.at("cache_kb").is_null());
    const double mhz = std::stod(want["cpu MHz"]);
    EXPECT_NEAR(c.at("mhz").get<double>(), mhz, mhz / 100);
    std::string flags;
    for (const json& f : c.at("flags")) flags += (flags.empty() ? "" : " ") + f.get<std::string>();
    EXPECT_EQ(flags, want["flags"]);
  }
}

INSTANTIATE_TEST_SUITE_P(Guests, Sysinfo, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
