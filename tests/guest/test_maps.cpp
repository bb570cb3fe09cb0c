// `nfm maps` against the guest's own /proc/PID/maps, line by line, on 5.10
// (VMA list) and 6.1 / 6.12 (maple tree); `--pages` checked against the bytes
// at the reported guest-physical addresses in a raw dump of the paused guest.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fixture.h"
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

std::string fmt_hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// `nfm maps` text: "==> PID (COMM) <==" then that process's /proc/PID/maps lines.
std::map<int, std::vector<std::string>> parse_text(const std::string& out) {
  std::map<int, std::vector<std::string>> maps;
  int pid = -1;
  for (const std::string& line : lines_of(out)) {
    if (line.rfind("==> ", 0) == 0) {
      pid = std::stoi(line.substr(4));
      maps[pid];
    } else if (pid >= 0) {
      maps[pid].push_back(line);
    }
  }
  return maps;
}

// Every process's maps, line by line. The reporter's own heap may grow while it
// writes the truth: it is skipped.
std::vector<std::string> compare_with_truth(const std::map<int, std::vector<std::string>>& ours,
                                            const GroundTruth& truth) {
  std::vector<std::string> diffs;
  for (const auto& [pid, proc] : truth.processes) {
    if (proc.comm == workload::reporter_comm) continue;
    const std::string* section = truth.section("/proc/" + std::to_string(pid) + "/maps");
    if (!section) continue;  // gone while the guest was looking
    const std::vector<std::string> want = lines_of(*section);
    auto it = ours.find(pid);
    const std::vector<std::string> got = it == ours.end() ? std::vector<std::string>{} : it->second;
    const std::string who = "pid " + std::to_string(pid) + " (" + proc.comm + ")";
    for (size_t i = 0; i < std::max(want.size(), got.size()); ++i) {
      const std::string w = i < want.size() ? want[i] : "<none>";
      const std::string o = i < got.size() ? got[i] : "<none>";
      if (!nfm::lab::same_but_serial_doubles(w, o))
        diffs.push_back(who + " line " + std::to_string(i) + ":\n    guest [" + w +
                        "]\n    nfm   [" + o + "]");
    }
  }
  for (const auto& [pid, lines] : ours)
    if (!truth.process(pid) && !lines.empty())
      diffs.push_back("extra process " + std::to_string(pid));
  return diffs;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "  " + x + "\n";
  return s;
}

class Maps : public testing::TestWithParam<std::string> {};

TEST_P(Maps, EveryProcesssMapsMatchTheGuestLineByLine) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  std::vector<std::string> diffs;
  std::map<int, std::vector<std::string>> ours;
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSERT_TRUE(g->request_truth().ok());
    ASSERT_TRUE(g->pause().ok());
    CliResult r = run_nfm({"maps", target});
    ASSERT_TRUE(g->resume().ok());
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "") << "warnings from a paused guest";
    ours = parse_text(r.out);
    diffs = compare_with_truth(ours, g->truth());
    if (diffs.empty()) break;
  }
  ASSERT_TRUE(diffs.empty()) << "nfm maps disagrees with the guest:\n" << join(diffs);
  size_t lines = 0;
  for (const auto& [pid, l] : ours) lines += l.size();
  EXPECT_GT(lines, 100u);
  // The special mappings are there, named as the kernel names them.
  const nfm::lab::Process* files = g->truth().find_process(workload::files_comm);
  ASSERT_NE(files, nullptr);
  std::string text;
  for (const std::string& l : ours[files->pid]) text += l + "\n";
  for (const char* name : {"[stack]", "[vdso]", "[vvar]"})
    EXPECT_NE(text.find(name), std::string::npos) << name << " in\n" << text;
}

TEST_P(Maps, JsonRowsDescribeTheBigAllocation) {
  NFM_LAB_GUEST(g, GetParam());
  const nfm::lab::Process* big = g->truth().find_process(workload::bigalloc_comm);
  ASSERT_NE(big, nullptr);
  CliResult r = run_nfm(
      {"maps", "--json", "--pid", std::to_string(big->pid), "qemu:" + std::to_string(g->pid())});
  ASSERT_EQ(r.status, 0) << r.err;
  json rows = json::parse(r.out);
  const json* found = nullptr;
  for (const json& row : rows) {
    EXPECT_EQ(row.at("pid"), big->pid);
    if (row.at("start") == fmt_hex(workload::bigalloc_address)) found = &row;
  }
  ASSERT_NE(found, nullptr) << rows.dump(1);
  EXPECT_EQ(found->at("end"), fmt_hex(workload::bigalloc_address + workload::bigalloc_size));
  EXPECT_EQ(found->at("perms"), "rw-p");
  EXPECT_EQ(found->at("path"), "");
  EXPECT_EQ(found->at("inode"), 0);
  EXPECT_EQ(found->at("dev"), "00:00");
}

// --pages: each reported page of the 64 MiB allocation holds its own index at
// the reported guest-physical address of a raw dump (file offset == address).
// The dump itself gives the same maps and open files as the live paused guest.
TEST_P(Maps, PagesAreWhereTheyAreSaidToBe) {
  NFM_LAB_GUEST(g, GetParam());
  const nfm::lab::Process* big = g->truth().find_process(workload::bigalloc_comm);
  ASSERT_NE(big, nullptr);
  ASSERT_TRUE(g->pause().ok());
  CliResult r = run_nfm({"maps", "--json", "--pages", "--pid", std::to_string(big->pid),
                         "qemu:" + std::to_string(g->pid())});
  CliResult lsof_live = run_nfm({"lsof", "--json", "qemu:" + std::to_string(g->pid())});
  ASSERT_EQ(lsof_live.status, 0) << lsof_live.err;
  const std::string raw = g->run_dir() + "/maps-pages.raw";
  ASSERT_TRUE(g->pmemsave(raw).ok());
  ASSERT_TRUE(g->resume().ok());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  json rows = json::parse(r.out);
  std::ifstream dump(raw, std::ios::binary);
  ASSERT_TRUE(dump.good());
  std::set<uint64_t> indices;
  size_t checked = 0, total_pages = 0;
  for (const json& row : rows) {
    total_pages += row.at("pages").size();
    if (row.at("start") != fmt_hex(workload::bigalloc_address)) continue;
    for (const json& p : row.at("pages")) {
      const uint64_t va = std::stoull(p.at("va").get<std::string>(), nullptr, 16);
      const uint64_t pa = std::stoull(p.at("pa").get<std::string>(), nullptr, 16);
      const uint64_t size = p.at("size").get<uint64_t>();
      for (uint64_t off = 0; off < size; off += 4096) {
        const uint64_t index = (va + off - workload::bigalloc_address) / 4096;
        std::string want;
        for (int i = 0; i < 256; ++i) want += workload::bigalloc_line(static_cast<uint32_t>(index));
        std::string got(4096, '\0');
        dump.seekg(static_cast<std::streamoff>(pa + off));
        dump.read(got.data(), got.size());
        ASSERT_EQ(got, want) << "page " << index << " at va " << std::hex << va + off << " pa "
                             << pa + off;
        indices.insert(index);
        ++checked;
      }
    }
  }
  // The dump of the same paused guest reads the same.
  CliResult from_dump =
      run_nfm({"maps", "--json", "--pages", "--pid", std::to_string(big->pid), raw});
  ASSERT_EQ(from_dump.status, 0) << from_dump.err;
  EXPECT_EQ(json::parse(from_dump.out), rows) << "the raw dump disagrees with the live read";
  CliResult lsof_dump = run_nfm({"lsof", "--json", raw});
  ASSERT_EQ(lsof_dump.status, 0) << lsof_dump.err;
  EXPECT_EQ(json::parse(lsof_dump.out), json::parse(lsof_live.out)) << "lsof: dump vs live";
  std::filesystem::remove(raw);
  EXPECT_EQ(checked, workload::bigalloc_size / 4096);
  EXPECT_EQ(indices.size(), workload::bigalloc_size / 4096);
  EXPECT_GT(total_pages, checked) << "the other maps have present pages too";
}

INSTANTIATE_TEST_SUITE_P(Guests, Maps, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
