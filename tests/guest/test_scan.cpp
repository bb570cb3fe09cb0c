// `nfm scan` against marker strings a guest process plants in its own memory and
// in the kernel log (testing/guest/helpers/markers.c): each is found at the
// virtual and guest-physical address the guest's own page tables give
// (/proc/self/pagemap, on its truth port), a page the guest swapped out is counted
// and not read, and pages the host evicted from a RAM file are skipped, stay
// evicted, and are found with --fault-in. Clean guests give no marker match, and a
// realistic rule set (contrib/yara) compiles and scans them.
#include <fcntl.h>
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"
#include "nfm_cli.h"
#include "store_servers.h"

namespace {

using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;
using nfm::lab::Backing;

const int kGuests = nfm::lab::declare_guests({
    // Pool guests (read only): the clean-guest checks.
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
    // Guests of their own, where markers are planted: 6.1's RAM is a file on disk, so
    // that the host can evict part of it.
    {.kernel = "5.10", .ram_mib = 256, .name = "5.10-scan", .exclusive = true},
    {.kernel = "6.1",
     .ram_mib = 256,
     .backing = Backing::disk_file,
     .name = "6.1-scan",
     .exclusive = true},
    {.kernel = "6.12", .ram_mib = 256, .name = "6.12-scan", .exclusive = true},
});

std::string target_of(const nfm::lab::Guest* g) {
  return "qemu:" + std::to_string(g->pid());
}

// One marker as the guest placed it.
struct Placed {
  uint64_t va = 0, pa = 0;
  std::string state;  // "" (in RAM), "swapped" or "absent"
};

struct Markers {
  int pid = 0;
  std::map<std::string, Placed> at;  // by kind: heap, straddle, file, stack, swap
  bool kmsg_written = false;
};

// The truth's "markers" section: "NAME PID", then "KIND VA PA [STATE]" lines.
Markers parse_markers(const std::string& section) {
  Markers m;
  std::istringstream in(section);
  std::string line, name;
  std::getline(in, line);
  std::istringstream(line) >> name >> m.pid;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string kind, va, pa, state;
    f >> kind >> va >> pa >> state;
    if (kind == "kmsg") m.kmsg_written = va == "written";
    if (kind == "kmsg" || kind == "end" || pa.empty()) continue;
    m.at[kind] = {std::stoull(va, nullptr, 16), std::stoull(pa, nullptr, 16), state};
  }
  return m;
}

std::string write_rules(const std::string& dir, const std::string& tag) {
  std::string path = dir + "/markers.yar";
  std::ofstream out(path);
  for (const char* kind : {"HEAP", "STRADDLE", "FILE", "STACK", "KMSG", "SWAP"})
    out << fmt::format(
        "rule marker_{0} : nfm_test {{\n  meta:\n    kind = \"{0}\"\n  strings:\n    $m = "
        "\"NFM-MARK-{0}-{1}\"\n  condition:\n    $m\n}}\n",
        kind, tag);
  return path;
}

struct Scanned {
  int status = -1;
  json report;
  std::string err;
};
Scanned scan(const nfm::lab::Guest* g, std::vector<std::string> args) {
  std::vector<std::string> all{"scan", "--json"};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back(target_of(g));
  CliResult r = run_nfm(all, 300);
  Scanned s{r.status, json(), r.err};
  if (!r.out.empty()) s.report = json::parse(r.out, nullptr, false);
  return s;
}

std::vector<json> matches_of(const json& report, const std::string& rule) {
  std::vector<json> out;
  for (const json& m : report.value("matches", json::array()))
    if (m.value("rule", "") == rule) out.push_back(m);
  return out;
}

uint64_t hex(const json& v) {
  return v.is_string() ? std::stoull(v.get<std::string>(), nullptr, 16) : 0;
}

json process_summary(const json& report, int pid) {
  for (const json& p : report["summary"].value("processes", json::array()))
    if (p.value("pid", 0) == pid) return p;
  return json::object();
}

class ScanGuest : public testing::TestWithParam<std::string> {};

// Every marker at the exact place the guest's own page tables give; the swapped one
// counted, not read; the one in the kernel log in the kernel's log buffer.
TEST_P(ScanGuest, FindsEachMarkerWhereTheGuestPutIt) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string tag = fmt::format("{:x}{:x}", getpid(), g->pid());
  ASSERT_TRUE(g->send_command("swap").ok());
  ASSERT_TRUE(g->send_command("markers nfm-marks " + tag + " swap").ok());
  ASSERT_TRUE(g->request_truth().ok());
  const Markers m = parse_markers(g->truth().section_or("markers"));
  ASSERT_GT(m.pid, 0) << g->truth().section_or("markers");
  for (const char* kind : {"heap", "straddle", "straddle_end", "file", "stack", "swap"})
    ASSERT_TRUE(m.at.count(kind)) << kind << " missing:\n" << g->truth().section_or("markers");
  // The straddling marker really straddles: 7 bytes on one page, the rest on another.
  EXPECT_EQ((m.at.at("straddle").va + 7) % 4096, 0u);
  EXPECT_EQ(m.at.at("straddle_end").va, m.at.at("straddle").va + 7);
  ASSERT_EQ(m.at.at("swap").state, "swapped") << "the guest could not swap the page out:\n"
                                              << g->truth().section_or("markers");
  ASSERT_TRUE(m.kmsg_written);

  const std::string rules = write_rules(g->run_dir(), tag);
  const Scanned s = scan(g, {"--all", "--rules", rules});
  ASSERT_EQ(s.status, 1) << s.err;  // 1: matches
  ASSERT_TRUE(s.report.is_object()) << s.err;

  struct Expect {
    const char* kind;
    const char* rule;
    std::string path;  // the VMA's, "" for an anonymous one
  };
  for (const Expect& e :
       {Expect{"heap", "marker_HEAP", "[heap]"}, Expect{"straddle", "marker_STRADDLE", "[heap]"},
        Expect{"file", "marker_FILE", "/tmp/nfm-mark-" + tag + ".bin"},
        Expect{"stack", "marker_STACK", ""}}) {
    SCOPED_TRACE(e.kind);
    const auto found = matches_of(s.report, e.rule);
    ASSERT_EQ(found.size(), 1u) << s.report["matches"].dump(1);
    const json& f = found[0];
    EXPECT_EQ(f["memory"], "process");
    EXPECT_EQ(f["pid"], m.pid);
    EXPECT_EQ(f["comm"], "nfm-marks");
    EXPECT_EQ(f["string"], "$m");
    EXPECT_EQ(f["tags"], json::array({"nfm_test"}));
    EXPECT_EQ(hex(f["va"]), m.at.at(e.kind).va);
    EXPECT_EQ(hex(f["pa"]), m.at.at(e.kind).pa);
    EXPECT_LE(hex(f["vma_start"]), hex(f["va"]));
    EXPECT_GT(hex(f["vma_end"]), hex(f["va"]));
    EXPECT_EQ(f["path"], e.path);
    if (std::string(e.kind) == "file") {
      EXPECT_EQ(f["file_offset"], 8192 + 100);
      EXPECT_EQ(f["perms"], "rw-s");
    } else {
      EXPECT_TRUE(f["file_offset"].is_null());
      EXPECT_EQ(f["perms"], "rw-p");
    }
  }
  // The swapped-out page: counted as swapped for its process, not read, not an error.
  EXPECT_TRUE(matches_of(s.report, "marker_SWAP").empty()) << s.report["matches"].dump(1);
  const json p = process_summary(s.report, m.pid);
  EXPECT_GE(p.value("swapped_pages", 0), 1) << p.dump(1);
  EXPECT_FALSE(p.contains("error")) << p.dump(1);
  // The kernel log: in the printk ring's text, inside the kernel image (printk's
  // static scratch buffers may hold a copy too).
  bool in_log = false;
  for (const json& k : matches_of(s.report, "marker_KMSG")) {
    if (k["memory"] != "kernel") continue;
    EXPECT_EQ(k["module"], "vmlinux") << k;
    in_log = in_log || k.value("symbol", "").starts_with("__log_buf+");
  }
  EXPECT_TRUE(in_log) << s.report["matches"].dump(1);
  EXPECT_GT(s.report["summary"].value("bytes_scanned", 0), 1 << 20);
  EXPECT_FALSE(s.report["summary"]["kernel"].is_null());

  if (g->options().backing != Backing::disk_file) return;
  // Host paging: the host drops the pages of three markers from its page cache (QEMU
  // unmaps them: clean pages, paged out). The scan skips and counts them and leaves
  // them out of RAM; --fault-in reads them.
  ASSERT_TRUE(g->pause().ok());
  const int fd = open(g->memory_file().c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << g->memory_file();
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  const size_t size = static_cast<size_t>(st.st_size);
  void* ours = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(ours, MAP_FAILED);
  auto resident = [&](uint64_t pa) {
    unsigned char v = 0;
    EXPECT_EQ(mincore(static_cast<char*>(ours) + (pa & ~4095ull), 4096, &v), 0);
    return (v & 1) != 0;
  };
  // QEMU's mapping of the file: offset in the file == guest-physical address (one
  // block below 4 GiB).
  uint64_t qemu_base = 0;
  {
    std::ifstream maps(fmt::format("/proc/{}/maps", g->pid()));
    for (std::string line; std::getline(maps, line);)
      if (line.find(g->memory_file()) != std::string::npos)
        qemu_base = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
  }
  ASSERT_NE(qemu_base, 0u);
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, g->pid(), 0));
  ASSERT_GE(pidfd, 0);
  for (const char* kind : {"heap", "file", "stack"}) {
    const uint64_t page = m.at.at(kind).pa & ~4095ull;
    ASSERT_EQ(sync_file_range(
                  fd, static_cast<off_t>(page), 4096,
                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER),
              0);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): an address in QEMU, not in this process.
    iovec range{reinterpret_cast<void*>(qemu_base + page), 4096};
    ASSERT_EQ(syscall(SYS_process_madvise, pidfd, &range, 1, MADV_PAGEOUT, 0), 4096)
        << strerror(errno);
    posix_fadvise(fd, static_cast<off_t>(page), 4096, POSIX_FADV_DONTNEED);
    ASSERT_FALSE(resident(page)) << kind << " page still in the page cache";
  }
  const Scanned skipped = scan(g, {"--rules", rules});
  EXPECT_GE(skipped.report["summary"].value("host_nonresident_pages", 0), 3) << skipped.err;
  for (const char* rule : {"marker_HEAP", "marker_FILE", "marker_STACK"})
    EXPECT_TRUE(matches_of(skipped.report, rule).empty()) << rule;
  EXPECT_EQ(matches_of(skipped.report, "marker_STRADDLE").size(), 1u);  // its pages stayed
  for (const char* kind : {"heap", "file", "stack"})
    EXPECT_FALSE(resident(m.at.at(kind).pa)) << kind << ": the scan brought it back";
  const Scanned faulted = scan(g, {"--fault-in", "--rules", rules});
  EXPECT_EQ(faulted.report["summary"].value("host_nonresident_pages", -1), 0);
  for (const char* rule : {"marker_HEAP", "marker_FILE", "marker_STACK"})
    EXPECT_EQ(matches_of(faulted.report, rule).size(), 1u) << rule;
  close(pidfd);
  munmap(ours, size);
  close(fd);
  ASSERT_TRUE(g->resume().ok());
}

// `nfm crawl --scan-rules`: each crawl scans a budget of bytes and goes on where the
// last stopped, so the markers appear once the rotation has covered the guest, reach
// every store like other rows, and go when their process does.
TEST_P(ScanGuest, ACrawlRotatesThroughTheGuestAndForgetsWhatWentAway) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->request_truth().ok());
  const Markers m = parse_markers(g->truth().section_or("markers"));
  ASSERT_GT(m.pid, 0) << "FindsEachMarkerWhereTheGuestPutIt plants them first";
  const std::string tag = fmt::format("{:x}{:x}", getpid(), g->pid());
  const std::string rules = write_rules(g->run_dir(), tag);
  const std::string frames = g->run_dir() + "/scan-frames.jsonl";
  const std::string store = g->run_dir() + "/scan.db";
  auto crawl = nfm::testing::NfmProcess::start(
      {"crawl", "--features", "ps", "--scan-rules", rules, "--scan-rate", "4M", "--interval",
       "50ms", "--emit", "file:" + frames, "--emit", "sqlite:" + store, target_of(g)},
      g->run_dir() + "/crawl.out", g->run_dir() + "/crawl.err");
  // The markers' rows in the newest frame, waiting up to `seconds` for `want` of them.
  auto newest_markers = [&](size_t want, int seconds) {
    std::vector<json> rows;
    for (int i = 0; i < seconds * 10; ++i) {
      std::ifstream in(frames);
      std::string line, last;
      while (std::getline(in, line))
        if (!line.empty()) last = line;
      rows.clear();
      const json f = json::parse(last, nullptr, false);
      if (f.is_object())
        for (const json& r : f.value("scan", json::array()))
          if (r.value("pid", 0) == m.pid) rows.push_back(r);
      if (rows.size() == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return rows;
  };
  const auto found = newest_markers(4, 120);  // heap, straddle, file, stack
  ASSERT_EQ(found.size(), 4u) << nfm::testing::read_file(g->run_dir() + "/crawl.err");
  for (const json& r : found) {
    const std::string kind = r.value("meta", json::array()).at(0).get<std::string>().substr(5);
    std::string lower = kind;
    for (char& c : lower) c = static_cast<char>(std::tolower(c));
    EXPECT_EQ(hex(r["va"]), m.at.at(lower).va) << r;
  }
  // Its process ends: its matches leave the next frames.
  ASSERT_TRUE(g->send_command("kill nfm-marks").ok());
  EXPECT_EQ(newest_markers(0, 60).size(), 0u);
  crawl.signal(SIGTERM);
  EXPECT_EQ(crawl.wait(30), 0);
  // The store has the rows too, with their columns.
  // Its history: the newest frame no longer has them.
  const CliResult q = run_nfm({"query", "--store", "sqlite:" + store, "--since", "-1h", "--json",
                               fmt::format("SELECT DISTINCT rule, va FROM nfm_scan WHERE pid = {} "
                                           "ORDER BY rule",
                                           m.pid)});
  ASSERT_EQ(q.status, 0) << q.err;
  const json stored = json::parse(q.out, nullptr, false);
  ASSERT_TRUE(stored.is_array()) << q.out;
  std::vector<std::string> stored_rules;
  for (const json& r : stored)
    if (r.is_object()) stored_rules.push_back(r.value("rule", ""));
  EXPECT_EQ(stored_rules, (std::vector<std::string>{"marker_FILE", "marker_HEAP", "marker_STACK",
                                                    "marker_STRADDLE"}))
      << q.out;
}

INSTANTIATE_TEST_SUITE_P(Lab, ScanGuest, testing::Values("5.10-scan", "6.1-scan", "6.12-scan"),
                         nfm::lab::param_name);

class CleanGuest : public testing::TestWithParam<std::string> {};

// The lab guest's binaries and kernel hold no marker: marker rules match nothing.
// A realistic rule set compiles and scans the whole guest.
TEST_P(CleanGuest, HasNoMarkerAndTakesARealRuleSet) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string dir = g->run_dir();
  {
    std::ofstream(dir + "/any-marker.yar")
        << "rule any_marker { strings: $m = \"NFM-MARK-\" condition: $m }\n";
  }
  const Scanned markers = scan(g, {"--all", "--rules", dir + "/any-marker.yar"});
  EXPECT_EQ(markers.status, 0) << markers.err;
  EXPECT_EQ(markers.report.value("matches", json::array()), json::array());
  const Scanned set = scan(g, {"--all", "--rules", NFM_SOURCE_DIR "/contrib/yara"});
  EXPECT_EQ(set.status, 0) << set.err << set.report.value("matches", json::array()).dump(1);
  EXPECT_THAT(set.report["summary"].value("rules", ""),
              testing::MatchesRegex("[5-9][0-9] rules.*"));
  EXPECT_GT(set.report["summary"].value("bytes_scanned", 0), 1 << 20);
}

INSTANTIATE_TEST_SUITE_P(Lab, CleanGuest, testing::Values("5.10", "6.1", "6.12"),
                         nfm::lab::param_name);

// Rules that do not compile: YARA's own message, with file and line; exit 2.
TEST(ScanRules, ABadRuleFileIsRefusedWithItsLine) {
  char dir[] = "/tmp/nfm-scan-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string bad = std::string(dir) + "/bad.yar";
  std::ofstream(bad) << "rule ok { condition: true }\n\nrule broken { strings: $a = \"x\" "
                        "condition: $b }\n";
  const CliResult r = run_nfm({"scan", "--rules", bad, "/nonexistent-image"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, testing::HasSubstr("nfm: error: --rules " + bad + ": rules do not compile: " +
                                        bad + ":3: undefined string \"$b\""));
  std::remove(bad.c_str());
  rmdir(dir);
}

}  // namespace
