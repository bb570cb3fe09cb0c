// `nfm ps` beyond identities: command lines read from each process's own memory,
// thread counts, nice and priority, CPU times, the RSS split and CPU shares,
// against the guest's own /proc on 5.10, 6.1 and 6.12.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "features/processes/processes.h"
#include "fixture.h"
#include "nfm_cli.h"

namespace {

using nfm::lab::GroundTruth;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

// CPU shares need the burner burning and the guest's own snapshots of /proc: guests
// of this program's own (the shared pool's are quiet).
const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384, .append = "nfm.burn=10 nfm.snapshot=2"},
    {.kernel = "6.1", .ram_mib = 384, .append = "nfm.burn=10 nfm.snapshot=2"},
    {.kernel = "6.12", .ram_mib = 384, .append = "nfm.burn=10 nfm.snapshot=2"},
});

constexpr int64_t kNsPerTick = 10'000'000;  // /proc's clock ticks: USER_HZ = 100

// The fields of a /proc/PID/stat line after "(comm)": index 0 is field 3 (state).
std::vector<std::string> stat_fields(const std::string& line) {
  std::vector<std::string> out;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream in(line.substr(close + 1));
  std::string f;
  while (in >> f) out.push_back(f);
  return out;
}
// Field N (1-based, as proc(5) numbers them) of a stat line.
int64_t stat_field(const std::vector<std::string>& fields, size_t n) {
  return n >= 3 && n - 3 < fields.size() ? std::stoll(fields[n - 3]) : -1;
}

// "Key:   N kB" of a status file.
int64_t status_kb(const std::string& status, const std::string& key) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  return -1;
}

std::string hex_decode(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// The workload's processes that sleep once set up: their counters hold still.
// The reporter writes the truth and the burner spins: theirs move.
bool idle_workload(const std::string& comm) {
  return comm.rfind("nfm-", 0) == 0 && comm != "nfm-report" && comm != "nfm-burn";
}

json parse_rows(const CliResult& r) {
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return json::array();
  return json::parse(r.out);
}

std::map<int, json> by_pid(const json& rows) {
  std::map<int, json> m;
  for (const json& r : rows) m[r.at("pid").get<int>()] = r;
  return m;
}

struct Diffs {
  std::vector<std::string> list;
  template <typename A, typename B>
  void check(int pid, const std::string& comm, const std::string& what, const A& got,
             const B& want) {
    if (got == want) return;
    std::ostringstream s;
    s << "task " << pid << " (" << comm << ") " << what << ": nfm " << json(got).dump()
      << ", guest " << json(want).dump();
    list.push_back(s.str());
  }
  std::string text() const {
    std::string s;
    for (const auto& x : list) s += "  " + x + "\n";
    return s;
  }
};

// Process rows against /proc/PID/{stat,status,cmdline}.
void compare_processes(const json& rows, const GroundTruth& truth, Diffs& d) {
  const auto nfm = by_pid(rows);
  for (const auto& [pid, p] : truth.processes) {
    auto it = nfm.find(pid);
    if (it == nfm.end()) {
      d.list.push_back("missing process " + std::to_string(pid) + " (" + p.comm + ")");
      continue;
    }
    const json& r = it->second;
    const std::string proc = "/proc/" + std::to_string(pid);
    // Every process, kernel threads (no command line) included.
    const std::string raw = hex_decode(truth.section_or("hex " + proc + "/cmdline"));
    d.check(pid, p.comm, "cmdline", r.at("cmdline").get<std::vector<std::string>>(),
            nfm::split_cmdline(raw));
    const auto stat = stat_fields(truth.section_or(proc + "/stat"));
    d.check(pid, p.comm, "prio", r.at("prio").get<int64_t>(), stat_field(stat, 18));
    d.check(pid, p.comm, "nice", r.at("nice").get<int64_t>(), stat_field(stat, 19));
    d.check(pid, p.comm, "threads", r.at("threads").get<int64_t>(), stat_field(stat, 20));
    if (!idle_workload(p.comm)) continue;
    d.check(pid, p.comm, "utime ticks", r.at("utime_ns").get<int64_t>() / kNsPerTick,
            stat_field(stat, 14));
    d.check(pid, p.comm, "stime ticks", r.at("stime_ns").get<int64_t>() / kNsPerTick,
            stat_field(stat, 15));
    const std::string status = truth.section_or(proc + "/status");
    d.check(pid, p.comm, "rss_anon_kb", r.at("rss_anon_kb").get<int64_t>(),
            status_kb(status, "RssAnon"));
    d.check(pid, p.comm, "rss_file_kb", r.at("rss_file_kb").get<int64_t>(),
            status_kb(status, "RssFile"));
    d.check(pid, p.comm, "rss_shmem_kb", r.at("rss_shmem_kb").get<int64_t>(),
            status_kb(status, "RssShmem"));
    d.check(pid, p.comm, "rss_kb", r.at("rss_kb").get<int64_t>(), status_kb(status, "VmRSS"));
  }
}

// Thread rows of the idle workload against /proc/PID/task/TID/stat.
void compare_threads(const json& rows, const GroundTruth& truth, Diffs& d) {
  const auto nfm = by_pid(rows);
  for (const auto& [tid, t] : truth.threads) {
    const nfm::lab::Process* p = truth.process(t.tgid);
    if (!p || !idle_workload(p->comm)) continue;
    auto it = nfm.find(tid);
    if (it == nfm.end()) {
      d.list.push_back("missing thread " + std::to_string(tid) + " (" + t.comm + ")");
      continue;
    }
    const json& r = it->second;
    const auto stat = stat_fields(truth.section_or("/proc/" + std::to_string(t.tgid) + "/task/" +
                                                   std::to_string(tid) + "/stat"));
    d.check(tid, t.comm, "thread utime ticks", r.at("utime_ns").get<int64_t>() / kNsPerTick,
            stat_field(stat, 14));
    d.check(tid, t.comm, "thread stime ticks", r.at("stime_ns").get<int64_t>() / kNsPerTick,
            stat_field(stat, 15));
    d.check(tid, t.comm, "thread prio", r.at("prio").get<int64_t>(), stat_field(stat, 18));
    d.check(tid, t.comm, "thread nice", r.at("nice").get<int64_t>(), stat_field(stat, 19));
    d.check(tid, t.comm, "thread threads", r.at("threads").get<int64_t>(), stat_field(stat, 20));
    d.check(tid, t.comm, "thread cmdline", r.at("cmdline").get<std::vector<std::string>>(),
            p->args);
  }
}

class PsDetail : public testing::TestWithParam<std::string> {};

// Paused after a fresh truth: every field nfm reports equals what the guest's
// /proc showed the moment before.
TEST_P(PsDetail, MatchesProcStatStatusAndCmdlineOnAPausedGuest) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  Diffs d;
  json processes, threads;
  // Kernel threads may come and go between the guest's look and ours.
  for (int attempt = 0; attempt < 4; ++attempt) {
    ASSERT_TRUE(g->request_truth().ok());
    ASSERT_TRUE(g->pause().ok());
    processes = parse_rows(run_nfm({"ps", "--json", target}));
    threads = parse_rows(run_nfm({"ps", "--threads", "--json", target}));
    ASSERT_TRUE(g->resume().ok());
    d = {};
    compare_processes(processes, g->truth(), d);
    compare_threads(threads, g->truth(), d);
    if (d.list.empty()) break;
  }
  EXPECT_TRUE(d.list.empty()) << "nfm ps disagrees with the guest:\n" << d.text();

  // The comparison has teeth: real command lines, several threads, each RSS kind.
  const auto rows = by_pid(processes);
  const nfm::lab::Process* sleeper = g->truth().find_process("nfm-sleep-01");
  const nfm::lab::Process* big = g->truth().find_process("nfm-bigalloc");
  const nfm::lab::Process* multi = g->truth().find_process("nfm-threads");
  const nfm::lab::Process* burn = g->truth().find_process("nfm-burn");
  ASSERT_TRUE(sleeper && big && multi && burn);
  EXPECT_GE(rows.at(sleeper->pid).at("cmdline").size(), 2u);
  EXPECT_EQ(rows.at(multi->pid).at("threads"), 5);
  // 64 MiB touched (before 6.2 /proc leaves out the pages still in per-thread caches).
  EXPECT_GT(rows.at(big->pid).at("rss_anon_kb").get<int64_t>(), 63 * 1024);
  EXPECT_GT(rows.at(big->pid).at("rss_file_kb").get<int64_t>(), 0);
  EXPECT_EQ(rows.at(burn->pid).at("nice"), 19);
  EXPECT_EQ(rows.at(burn->pid).at("prio"), 39);
  EXPECT_GT(rows.at(burn->pid).at("utime_ns").get<int64_t>(), 0);
  EXPECT_EQ(rows.at(2).at("cmdline"), json::array()) << "kthreadd has no command line";
  EXPECT_EQ(rows.at(2).at("rss_kb"), 0);

  // The text form, like ps aux: kernel threads in brackets, arguments joined.
  CliResult text = run_nfm({"ps", target});
  ASSERT_EQ(text.status, 0) << text.err;
  std::string sleeper_line;
  for (const std::string& a : sleeper->args) sleeper_line += (sleeper_line.empty() ? "" : " ") + a;
  EXPECT_NE(text.out.find(" " + sleeper_line + "\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" [kthreadd]\n"), std::string::npos) << text.out;
}

// A snapshot's clocks and the CPU ticks (utime + stime) and start of the task
// named `comm` (the guest writes one every 2 s: testing/guest/helpers/report.c).
struct Sample {
  double monotonic = 0, uptime = 0;  // seconds
  int64_t ticks = -1, start_ticks = -1;
};
Sample sample(const std::string& snapshot, const std::string& comm) {
  Sample s;
  std::istringstream in(snapshot);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("monotonic ", 0) == 0) s.monotonic = std::stod(line.substr(10));
    if (line.rfind("uptime ", 0) == 0) s.uptime = std::stod(line.substr(7));
    if (line.rfind("stat ", 0) == 0 && line.find(" (" + comm + ") ") != std::string::npos) {
      const auto f = stat_fields(line);
      s.ticks = stat_field(f, 14) + stat_field(f, 15);
      s.start_ticks = stat_field(f, 22);
    }
  }
  return s;
}

// Waits (bounded) for a snapshot other than `seen`.
std::string next_snapshot(nfm::lab::Guest& g, const std::string& seen) {
  for (int i = 0; i < 600; ++i) {
    std::string s = g.latest_snapshot();
    if (!s.empty() && s != seen) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return {};
}

// The lifetime share, as ps %CPU: CPU time over time since the task started.
// The guest's side comes from a snapshot (its /proc/uptime, then every stat line
// within milliseconds); the guest is paused as soon as the snapshot is seen, a
// delay d of a few hundred ms on an age A of a minute or more: the share moves by
// at most 100 * d / A percentage points (the task running all of d), so 1.5 points.
TEST_P(PsDetail, LifetimeCpuShareIsCpuTimeOverAge) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string snapshot = next_snapshot(*g, g->latest_snapshot());
  ASSERT_TRUE(g->pause().ok());
  const json rows = parse_rows(run_nfm({"ps", "--json", "qemu:" + std::to_string(g->pid())}));
  ASSERT_TRUE(g->resume().ok());
  ASSERT_FALSE(snapshot.empty()) << "no snapshot from the guest";
  const auto nfm = by_pid(rows);
  for (const char* comm : {"nfm-burn", "nfm-sleep-01"}) {
    const nfm::lab::Process* p = g->truth().find_process(comm);
    ASSERT_NE(p, nullptr) << comm;
    const Sample s = sample(snapshot, comm);
    ASSERT_GE(s.ticks, 0) << comm;
    const double age_s = s.uptime - s.start_ticks / 100.0;
    ASSERT_GT(age_s, 0) << comm;
    const double guest_pct = 100.0 * (s.ticks / 100.0) / age_s;
    EXPECT_NEAR(nfm.at(p->pid).at("cpu_pct").get<double>(), guest_pct, 1.5) << comm;
    if (p->comm == "nfm-burn") {
      EXPECT_GT(guest_pct, 2.0) << "the burner should be burning";
    }
  }
}

// `--interval`: the burner's share over a few seconds, against the guest's own
// accounting over a window that encloses nfm's (the snapshots just before and
// just after it). The burner spins PCT% of every 100 ms (nfm.burn=10), so its
// share is stationary and windows of 5-10 s see the same value up to the phase of
// a cycle at each edge (10 ms of 5 s: 0.2 points each), the tick resolution of
// the guest's numbers (10 ms) and the odd preemption by the reporter; the issue
// allows 4 percentage points, which those stay well within.
TEST_P(PsDetail, CpuShareOverAnIntervalAgreesWithTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string before = next_snapshot(*g, g->latest_snapshot());
  ASSERT_FALSE(before.empty()) << "no snapshot from the guest";
  const json rows =
      parse_rows(run_nfm({"ps", "--interval", "5", "--json", "qemu:" + std::to_string(g->pid())}));
  const std::string after = next_snapshot(*g, g->latest_snapshot());
  ASSERT_FALSE(after.empty()) << "no snapshot from the guest";

  const nfm::lab::Process* burn = g->truth().find_process("nfm-burn");
  const nfm::lab::Process* sleeper = g->truth().find_process("nfm-sleep-01");
  ASSERT_TRUE(burn && sleeper);
  const auto nfm = by_pid(rows);
  const Sample b0 = sample(before, "nfm-burn"), b1 = sample(after, "nfm-burn");
  ASSERT_GE(b0.ticks, 0);
  ASSERT_GE(b1.ticks, b0.ticks);
  ASSERT_GT(b1.monotonic, b0.monotonic);
  const double guest_pct = (b1.ticks - b0.ticks) / (b1.monotonic - b0.monotonic);  // ticks = 10 ms
  const double nfm_pct = nfm.at(burn->pid).at("cpu_pct").get<double>();
  EXPECT_GT(guest_pct, 2.0) << "the burner should be burning";
  EXPECT_NEAR(nfm_pct, guest_pct, 4.0);

  // An idle sleeper: nothing on either side.
  const Sample s0 = sample(before, "nfm-sleep-01"), s1 = sample(after, "nfm-sleep-01");
  EXPECT_EQ(s1.ticks, s0.ticks);
  EXPECT_EQ(nfm.at(sleeper->pid).at("cpu_pct").get<double>(), 0.0);
}

// A paused guest's time stands still: no task gets a share of it.
TEST_P(PsDetail, APausedGuestUsesNoCpuOverAnInterval) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->pause().ok());
  const json rows =
      parse_rows(run_nfm({"ps", "--interval", "1", "--json", "qemu:" + std::to_string(g->pid())}));
  ASSERT_TRUE(g->resume().ok());
  ASSERT_GT(rows.size(), 30u);
  for (const json& r : rows) EXPECT_EQ(r.at("cpu_pct").get<double>(), 0.0) << r.dump();
}

INSTANTIATE_TEST_SUITE_P(Guests, PsDetail, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
