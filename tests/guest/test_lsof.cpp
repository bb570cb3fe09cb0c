// `nfm lsof` against the guest's own /proc/PID/fd (readlink) and fdinfo, on
// 5.10, 6.1 and 6.12: every fd of every process, with its path, position and flags.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "features/processes/processes.h"
#include "fixture.h"
#include "kernel/kernel.h"
#include "kernel/paths.h"
#include "host/target.h"
#include "nfm_cli.h"
#include "workload.h"

namespace {

using nfm::lab::GroundTruth;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;
namespace workload = nfm::lab::workload;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
});

json parse_rows(const CliResult& r) {
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return json::array();
  return json::parse(r.out);
}

uint32_t octal(const json& v) {
  return static_cast<uint32_t>(std::stoul(v.get<std::string>(), nullptr, 8));
}

// Every fd of every process the guest listed, compared with nfm's rows. The
// reporter opens and closes files while it writes the truth: only the fds it
// has in both views are compared (its serial port, with O_CLOEXEC, among them).
std::vector<std::string> compare_with_truth(const json& rows, const GroundTruth& truth) {
  std::vector<std::string> diffs;
  std::map<std::pair<int, int>, const json*> ours;
  for (const json& r : rows) ours[{r.at("pid").get<int>(), r.at("fd").get<int>()}] = &r;
  std::set<int> reporters;
  for (const auto* p : truth.find_processes(workload::reporter_comm)) reporters.insert(p->pid);
  for (const auto& [pid, proc] : truth.processes) {
    for (const auto& [fd, info] : proc.fds) {
      auto it = ours.find({pid, fd});
      const std::string what = "pid " + std::to_string(pid) + " (" + proc.comm + ") fd " +
                               std::to_string(fd) + " -> " + info.target;
      if (it == ours.end()) {
        if (reporters.count(pid)) continue;  // one it had open while it looked
        diffs.push_back("missing " + what);
        continue;
      }
      const json& r = *it->second;
      auto check = [&](const char* field, auto got, auto want) {
        if (got == want) return;
        std::ostringstream s;
        s << what << ": " << field << " nfm " << got << ", guest " << want;
        diffs.push_back(s.str());
      };
      if (!nfm::lab::same_but_serial_doubles(info.target, r.at("path").get<std::string>()))
        check("path", r.at("path").get<std::string>(), info.target);
      if (info.pos) check("pos", r.at("pos").get<uint64_t>(), *info.pos);
      if (info.flags) check("flags (octal)", octal(r.at("flags")), *info.flags);
      ours.erase(it);
    }
  }
  for (const auto& [key, r] : ours) {
    if (reporters.count(key.first)) continue;
    // A task the guest did not list (a kernel thread born since) has no fds of
    // its own to compare; a listed one must not have extra fds.
    if (!truth.process(key.first)) continue;
    diffs.push_back("extra pid " + std::to_string(key.first) + " fd " + std::to_string(key.second) +
                    " -> " + r->at("path").get<std::string>());
  }
  return diffs;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "  " + x + "\n";
  return s;
}

class Lsof : public testing::TestWithParam<std::string> {};

TEST_P(Lsof, EveryFdOfEveryProcessMatchesTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  std::vector<std::string> diffs;
  json rows;
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSERT_TRUE(g->request_truth().ok());
    ASSERT_TRUE(g->pause().ok());
    CliResult r = run_nfm({"lsof", "--json", target});
    EXPECT_EQ(r.err, "") << "warnings from a paused guest";
    rows = parse_rows(r);
    diffs = compare_with_truth(rows, g->truth());
    ASSERT_TRUE(g->resume().ok());
    if (diffs.empty()) break;
  }
  ASSERT_TRUE(diffs.empty()) << "nfm lsof disagrees with the guest:\n" << join(diffs);
  size_t fds = 0;
  for (const auto& [pid, p] : g->truth().processes) fds += p.fds.size();
  EXPECT_GT(fds, 40u) << "the guest's view should list many fds";
  EXPECT_GE(rows.size(), fds - 20);
}

// The workload's known fds, by what they are.
TEST_P(Lsof, KnowsTheWorkloadsFiles) {
  NFM_LAB_GUEST(g, GetParam());
  const nfm::lab::Process* files = g->truth().find_process(workload::files_comm);
  ASSERT_NE(files, nullptr);
  json rows = parse_rows(run_nfm(
      {"lsof", "--json", "--pid", std::to_string(files->pid), "qemu:" + std::to_string(g->pid())}));
  std::map<int, json> by_fd;
  for (const json& r : rows) {
    EXPECT_EQ(r.at("pid"), files->pid);
    by_fd[r.at("fd").get<int>()] = r;
  }
  ASSERT_EQ(by_fd.count(workload::fd_known), 1u);
  const json& known = by_fd[workload::fd_known];
  EXPECT_EQ(known.at("path"), workload::known_file);
  EXPECT_EQ(known.at("type"), "file");
  EXPECT_EQ(known.at("pos"), workload::fd_known_pos);
  EXPECT_EQ(octal(known.at("flags")) & 3, 0u);  // O_RDONLY
  const json& dir = by_fd[workload::fd_dir];
  EXPECT_EQ(dir.at("path"), "/etc");
  EXPECT_EQ(dir.at("type"), "dir");
  EXPECT_NE(octal(dir.at("flags")) & 0200000, 0u);  // O_DIRECTORY
  const json& rd = by_fd[workload::fd_pipe_read];
  const json& wr = by_fd[workload::fd_pipe_write];
  EXPECT_EQ(rd.at("type"), "pipe");
  EXPECT_EQ(wr.at("type"), "pipe");
  EXPECT_EQ(rd.at("inode"), wr.at("inode"));
  EXPECT_EQ(rd.at("path"), "pipe:[" + std::to_string(rd.at("inode").get<uint64_t>()) + "]");
  EXPECT_EQ(rd.at("path"), files->fds.at(workload::fd_pipe_read).target);
  const json& null = by_fd[workload::fd_devnull];
  EXPECT_EQ(null.at("path"), "/dev/null");
  EXPECT_EQ(null.at("type"), "char");
  EXPECT_EQ(octal(null.at("flags")) & 3, 2u);  // O_RDWR
  const json& data = by_fd[workload::fd_data];
  EXPECT_EQ(data.at("path"), workload::data_file);
  EXPECT_EQ(data.at("type"), "file");
  EXPECT_EQ(data.at("pos"), workload::fd_data_pos);
  EXPECT_NE(octal(data.at("flags")) & 02000, 0u);  // O_APPEND

  // nfm-net's sockets carry their struct socket / struct sock for joins.
  const nfm::lab::Process* net = g->truth().find_process(workload::net_comm);
  ASSERT_NE(net, nullptr);
  json net_rows = parse_rows(run_nfm(
      {"lsof", "--json", "--pid", std::to_string(net->pid), "qemu:" + std::to_string(g->pid())}));
  size_t sockets = 0;
  for (const json& r : net_rows) {
    if (r.at("type") != "socket") continue;
    ++sockets;
    EXPECT_EQ(r.at("path"), "socket:[" + std::to_string(r.at("inode").get<uint64_t>()) + "]");
    EXPECT_TRUE(r.contains("socket") && r.contains("sock")) << r.dump();
    if (r.contains("sock")) {
      EXPECT_NE(r.at("sock"), "0x0") << r.dump();
    }
  }
  EXPECT_GE(sockets, 7u) << net_rows.dump(1);  // 2 TCP listeners, 2 ends, 2 UDP, 1+ UNIX
}

// The executable of every process (mm->exe_file), as readlink(/proc/PID/exe) gives it.
TEST_P(Lsof, ExecutablePathsMatchTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  auto memory = nfm::open_target("qemu:" + std::to_string(g->pid()));
  ASSERT_TRUE(memory.ok()) << memory.error().to_string();
  auto k = nfm::Kernel::attach(std::move(memory).value());
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  auto processes = nfm::ProcessReader::create(**k);
  ASSERT_TRUE(processes.ok());
  auto paths = nfm::PathResolver::create(**k);
  ASSERT_TRUE(paths.ok()) << paths.error().to_string();
  auto list = processes->list();
  ASSERT_TRUE(list.ok());
  size_t user_processes = 0;
  for (const auto& row : list->rows) {
    const nfm::lab::Process* p = g->truth().process(row.pid);
    if (!p || p->comm != row.comm) continue;  // not in the guest's view
    auto exe = paths->task_exe(row.task);
    ASSERT_TRUE(exe.ok()) << row.pid << ": " << exe.error().to_string();
    EXPECT_TRUE(nfm::lab::same_but_serial_doubles(p->exe, *exe))
        << "pid " << row.pid << " (" << row.comm << "): nfm " << *exe << ", guest " << p->exe;
    if (!p->kernel_thread) ++user_processes;
  }
  EXPECT_GT(user_processes, 15u);
}

INSTANTIATE_TEST_SUITE_P(Guests, Lsof, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
