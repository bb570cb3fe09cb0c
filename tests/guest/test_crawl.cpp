// `nfm crawl`, the daemon, against two real guests found by discovery: frames for both
// whose processes are the guests' own; a guest reset re-attaches to the rebooted kernel
// (KASLR moved it) and frames resume; a panicked guest keeps being crawled from its
// memory; a guest whose RAM memfd is cut short under the crawler fails its crawls
// without a signal; a killed guest's frames stop while the other's go on; SIGTERM exits
// 0 with every line of the file a complete frame.
//
// One scenario, in order, on one crawler process: the steps build on each other.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "fixture.h"
#include "nfm_cli.h"
#include "workload.h"

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace workload = nfm::lab::workload;

// panic=0: the crashed guest stays down, its memory readable. Both are reset, crashed
// or killed: guests of their own (exclusive), never the shared pool's.
const int kGuests = nfm::lab::declare_guests({
    {.kernel = "6.1-cloud", .ram_mib = 384, .name = "crawl-a", .exclusive = true},
    {.kernel = "5.10",
     .ram_mib = 384,
     // Its RAM memfd is cut short in step 4 (seal=off lets QEMU's memfd shrink; a dump
     // file cut short is hostile_tests' case).
     .backing = nfm::lab::Backing::memfd_unsealed,
     .name = "crawl-b",
     .append = "panic=0"},
});

// What the test keeps of one frame.
struct Seen {
  uint64_t host_time_ns = 0;
  int64_t pid = 0;
  uint64_t uptime_ns = 0;
  std::set<std::string> comms;  // user-space processes
  bool panic_logged = false;
  bool processes_ok = false;
  std::string processes_walk;  // how the task-list walk ended
};

// Reads the crawler's JSON Lines file as it grows (complete lines only).
class FrameFile {
 public:
  explicit FrameFile(std::string path) : path_(std::move(path)) {}

  // Reads what was appended; returns false on a line that is not a frame.
  bool poll() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return true;
    in.seekg(static_cast<std::streamoff>(offset_));
    std::string chunk((std::istreambuf_iterator<char>(in)), {});
    size_t start = 0, nl;
    while ((nl = chunk.find('\n', start)) != std::string::npos) {
      const std::string line = chunk.substr(start, nl - start);
      start = nl + 1;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("meta")) {
        bad_ = line.substr(0, 200);
        return false;
      }
      Seen s;
      const json& meta = j.at("meta");
      s.host_time_ns = meta.at("host_time_ns").get<uint64_t>();
      const std::string name = meta.at("vm").at("name").get<std::string>();
      s.pid = meta.at("vm").at("pid").get<int64_t>();
      if (j.contains("uptime")) s.uptime_ns = j.at("uptime").at("uptime_ns").get<uint64_t>();
      const json& status = meta.at("features").at("processes");
      s.processes_ok = status.at("ok").get<bool>();
      s.processes_walk = status.value("walk", "");
      if (j.contains("processes"))
        for (const json& p : j.at("processes"))
          // Kernel threads have no memory map and no command line.
          if (p.at("vsz_kb").get<uint64_t>() > 0 || !p.at("cmdline").empty())
            s.comms.insert(p.at("comm").get<std::string>());
      if (j.contains("kmsg"))
        for (const json& r : j.at("kmsg"))
          s.panic_logged |= r.at("text").get<std::string>().find("Kernel panic - not syncing") !=
                            std::string::npos;
      frames_[name].push_back(std::move(s));
    }
    offset_ += start;
    return true;
  }
  const std::vector<Seen>& frames(const std::string& vm) { return frames_[vm]; }
  const std::string& bad_line() const { return bad_; }

 private:
  std::string path_;
  size_t offset_ = 0;
  std::map<std::string, std::vector<Seen>> frames_;
  std::string bad_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// QEMU's guest-RAM memfd (its largest), opened anew through /proc as any process
// holding it could; -1 if none.
int open_ram_memfd(pid_t qemu) {
  namespace fs = std::filesystem;
  int best = -1;
  off_t best_size = 0;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(qemu) + "/fd")) {
    std::error_code ec;
    if (!fs::read_symlink(e.path(), ec).string().starts_with("/memfd:")) continue;
    const int fd = open(e.path().c_str(), O_RDWR | O_CLOEXEC);
    struct stat st {};
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > best_size) {
      if (best >= 0) close(best);
      best = fd, best_size = st.st_size;
    } else if (fd >= 0) {
      close(fd);
    }
  }
  return best;
}

// Polls until `done` holds (false after `timeout`).
bool wait_for(FrameFile& file, std::chrono::seconds timeout, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!file.poll()) return false;
    if (done()) return true;
    std::this_thread::sleep_for(500ms);
  }
  return false;
}

// The guest's own user-space processes, by name.
std::set<std::string> truth_comms(const nfm::lab::Guest& g) {
  std::set<std::string> out;
  for (const auto& [pid, p] : g.truth().processes)
    if (!p.kernel_thread) out.insert(p.comm);
  return out;
}

// The guest's fork counter ("processes N" of its /proc/stat) in its latest dump.
uint64_t forks_of(const nfm::lab::Guest& g) {
  const std::string stat = g.truth().section_or("/proc/stat");
  const size_t at = stat.find("\nprocesses ");
  return at == std::string::npos ? 0 : std::stoull(stat.substr(at + 11));
}

// The resident set of a process, in KiB (0 once it is gone).
uint64_t rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6));
  return 0;
}

// A guest forking as fast as it can (each child opening a file and binding a socket
// before it exits) under a crawler asking every millisecond: the crawler lives, keeps
// crawling, its memory stays flat, the workload that does not churn is in its frames
// and what tore is counted. NFM_CHURN_SECONDS makes it longer (scripts/churn.sh).
TEST(Crawl, KeepsUpWithAGuestThatForksWithoutPause) {
  NFM_LAB_GUEST(a, "crawl-a");
  ASSERT_TRUE(a->send_command("churn nfm-churn").ok());
  ASSERT_TRUE(a->request_truth().ok());
  ASSERT_NE(a->truth().find_process("nfm-churn"), nullptr);
  const uint64_t forks_before = forks_of(*a);
  const auto started = std::chrono::steady_clock::now();
  const char* env = getenv("NFM_CHURN_SECONDS");
  const int seconds = env ? std::max(5, atoi(env)) : 20;

  const std::string dir = a->run_dir() + "/churn";
  std::filesystem::create_directories(dir);
  const std::string out = dir + "/frames.jsonl";
  // ASan keeps freed memory in a quarantine of up to 256 MiB by default: a flat
  // resident set is only visible under a small one.
  const char* asan = getenv("ASAN_OPTIONS");
  setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":quarantine_size_mb=16").c_str(), 1);
  auto crawl = nfm::testing::NfmProcess::start(
      {"crawl", "qemu:" + std::to_string(a->pid()), "--emit", "file:" + out, "--interval", "1ms",
       "--features", "ps,lsof,netstat", "--rotate-size", "4M", "--rotate-keep", "1"},
      dir + "/crawl.out", dir + "/crawl.err");
  std::vector<uint64_t> rss;  // one sample a second
  for (int i = 0; i < seconds && crawl.running(); ++i) {
    std::this_thread::sleep_for(1s);
    rss.push_back(rss_kib(crawl.pid()));
  }
  auto log = [&] { return read_file(dir + "/crawl.err"); };
  ASSERT_TRUE(crawl.running()) << log();
  crawl.signal(SIGTERM);
  ASSERT_EQ(crawl.wait(60), 0) << log();
  ASSERT_TRUE(a->request_truth().ok());
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const uint64_t forks = forks_of(*a) - forks_before;
  std::cout << "the guest forked " << forks << " processes in " << elapsed << " s ("
            << static_cast<uint64_t>(forks / elapsed) << " per second)\n";
  EXPECT_GT(forks, 1000u) << "the churn did not churn";
  ASSERT_TRUE(a->send_command("kill nfm-churn").ok());

  // "crawl stopped (SIGTERM): 1 VMs, N frames, ...": the crawler kept crawling.
  const std::string events = log();
  const size_t at = events.find("crawl stopped (SIGTERM): 1 VMs, ");
  ASSERT_NE(at, std::string::npos) << events;
  const uint64_t frames = std::stoull(events.substr(at + 32));
  EXPECT_GE(frames, static_cast<uint64_t>(seconds) * 5) << events;
  std::cout << events.substr(at, events.find('\n', at) - at) << "\n";

  // Flat memory: the last third of the run holds no more than the middle third plus
  // a little (allocator noise), however many frames went by. (The first third has the
  // attach and the profile in it.)
  ASSERT_GE(rss.size(), 3u);
  const size_t third = rss.size() / 3;
  const uint64_t middle = *std::max_element(rss.begin() + third, rss.end() - third);
  const uint64_t late = *std::max_element(rss.end() - third, rss.end());
  std::cout << "RSS (KiB): middle third max " << middle << ", last third max " << late << "\n";
  EXPECT_LE(late, middle + middle / 8 + uint64_t{8} * 1024);

  // The frames of the last file: the workload that does not churn is in every one
  // whose process walk was whole; walks that tore were retried or counted.
  FrameFile file(out);
  ASSERT_TRUE(file.poll()) << file.bad_line();
  const auto& seen = file.frames(a->name());
  ASSERT_FALSE(seen.empty());
  size_t whole = 0;
  for (const Seen& s : seen) {
    if (!s.processes_ok || s.processes_walk != "complete") continue;
    ++whole;
    EXPECT_TRUE(s.comms.count(std::string(workload::reporter_comm)));
    for (int i = 1; i <= workload::sleeper_count; ++i)
      EXPECT_TRUE(s.comms.count(workload::sleeper_comm(i))) << i;
  }
  EXPECT_GT(whole, seen.size() / 2);
}

TEST(Crawl, FollowsGuestsThroughResetPanicAndDeath) {
  NFM_LAB_GUEST(a, "crawl-a");
  NFM_LAB_GUEST(b, "crawl-b");
  ASSERT_TRUE(a->request_truth().ok());
  ASSERT_TRUE(b->request_truth().ok());
  const std::set<std::string> truth_a = truth_comms(*a), truth_b = truth_comms(*b);

  const std::string dir = a->run_dir();
  const std::string out = dir + "/frames.jsonl";
  // Discovery, restricted to this program's guests (others run concurrently).
  const std::string match = "nfm-*-" + std::to_string(getpid());
  // A profile cache of its own: the first attach builds each profile, the re-attach
  // after the reboot must find it (a shared cache would hide a key that changed).
  setenv("NFM_PROFILE_CACHE_DIR", (dir + "/profiles").c_str(), 1);
  auto crawl = nfm::testing::NfmProcess::start(
      {"crawl", "--emit", "file:" + out, "--match", match, "--interval", "300ms", "--features",
       "ps,uptime,dmesg", "--threads", "2", "--rotate-size", "0"},
      dir + "/crawl.out", dir + "/crawl.err");
  const std::string& na = a->name();
  const std::string& nb = b->name();
  FrameFile file(out);
  auto log = [&] { return read_file(dir + "/crawl.err"); };

  // 1. Both VMs are found, attached and crawled; their processes are the guests' own.
  ASSERT_TRUE(wait_for(file, 180s,
                       [&] { return file.frames(na).size() >= 3 && file.frames(nb).size() >= 3; }))
      << file.bad_line() << "\n"
      << log();
  EXPECT_EQ(file.frames(na).back().pid, a->pid());
  EXPECT_EQ(file.frames(nb).back().pid, b->pid());
  for (const auto& [name, truth] : {std::pair{na, truth_a}, std::pair{nb, truth_b}}) {
    const Seen& last = file.frames(name).back();
    EXPECT_TRUE(last.processes_ok) << name;
    for (const auto& comm : truth) EXPECT_TRUE(last.comms.count(comm)) << name << ": " << comm;
    for (const auto& comm : last.comms) EXPECT_TRUE(truth.count(comm)) << name << ": " << comm;
  }
  EXPECT_THAT(log(), testing::HasSubstr("event=vm_attached vm=" + na));
  EXPECT_THAT(log(), testing::HasSubstr("event=vm_attached vm=" + nb));

  // 2. Reset guest a: it reboots, its kernel lands elsewhere (KASLR); the crawler
  // follows. Frames resume from the new boot: the clock starts again, the workload
  // is back.
  const uint64_t uptime_before = file.frames(na).back().uptime_ns;
  // The lab starts QEMU with -no-reboot; let this guest reboot.
  ASSERT_TRUE(a->qmp_execute("set-action", {{"reboot", "reset"}}).ok());
  ASSERT_TRUE(a->qmp_execute("system_reset").ok());
  // Until the crawler notices, it may still read the old kernel's memory while the new
  // kernel reuses it, and a booting kernel's task list changes under the reader: wait
  // for the re-attach, then for one frame of the new boot with its whole workload.
  // That frame is the one judged (a later one may be mid-change again).
  auto whole_workload = [](const Seen& s) {
    if (!s.processes_ok || !s.comms.count(std::string(workload::reporter_comm))) return false;
    for (int i = 1; i <= workload::sleeper_count; ++i)
      if (!s.comms.count(workload::sleeper_comm(i))) return false;
    return true;
  };
  // The new boot starts with the first frame whose clock is behind the old one;
  // every frame after it is of the new boot, whatever its clock reads by then (under
  // load the workload may come up after the new uptime passed the old).
  std::optional<Seen> rebooted;
  EXPECT_TRUE(wait_for(file, 300s,
                       [&] {
                         if (log().find("event=vm_reattached vm=" + na) == std::string::npos)
                           return false;
                         const auto& frames = file.frames(na);
                         bool new_boot = false;
                         for (const Seen& s : frames) {
                           new_boot |= s.uptime_ns < uptime_before;
                           if (new_boot && whole_workload(s)) {
                             rebooted = s;
                             return true;
                           }
                         }
                         return false;
                       }))
      << "no frame of the rebooted guest with its whole workload\n"
      << log();
  EXPECT_THAT(log(), testing::HasSubstr("event=vm_reattached vm=" + na));
  ASSERT_TRUE(rebooted.has_value());
  // The new boot moved the kernel (KASLR) but it is the same build: its profile is
  // the one already made, its guest bytes hashing the same (relative_base aside).
  {
    const std::string events = log();
    const size_t at = events.find("event=vm_reattached vm=" + na);
    ASSERT_NE(at, std::string::npos);
    const std::string line = events.substr(at, events.find('\n', at) - at);
    EXPECT_THAT(line, testing::HasSubstr("profile warm " + dir + "/profiles/")) << line;
    const size_t first = events.find("event=vm_attached vm=" + na);
    ASSERT_NE(first, std::string::npos);
    EXPECT_THAT(events.substr(first, events.find('\n', first) - first),
                testing::HasSubstr("profile cold"));
  }

  // 3. Crash guest b: its kernel is dead, its memory is not. Frames keep coming, with
  // the panic in the log and the workload's processes still listed.
  ASSERT_TRUE(b->crash().ok());
  size_t panicked = 0;
  EXPECT_TRUE(wait_for(file, 120s,
                       [&] {
                         panicked = 0;
                         for (const Seen& s : file.frames(nb)) panicked += s.panic_logged;
                         return panicked >= 3;
                       }))
      << "frames of the panicked guest: " << panicked << "\n"
      << log();
  for (const auto& comm : truth_b) EXPECT_TRUE(file.frames(nb).back().comms.count(comm)) << comm;

  // 4. Cut guest b's RAM memfd short under the crawler (QEMU stopped first, so that
  // the crawler is the one reading past the new end): b's crawls fail saying why,
  // with no SIGBUS. Then kill b: its frames stop, a's go on, the crawler lives.
  ASSERT_EQ(kill(b->pid(), SIGSTOP), 0);
  {
    const int memfd = open_ram_memfd(b->pid());
    ASSERT_GE(memfd, 0) << "no memfd in /proc/" << b->pid() << "/fd";
    EXPECT_EQ(ftruncate(memfd, 0), 0) << strerror(errno);
    close(memfd);
  }
  EXPECT_TRUE(wait_for(file, 60s, [&] {
    return log().find("shrank while mapped") != std::string::npos;
  })) << log();
  EXPECT_TRUE(crawl.running()) << log();
  ASSERT_EQ(kill(b->pid(), SIGKILL), 0);
  EXPECT_TRUE(wait_for(file, 60s, [&] {
    return log().find("event=vm_lost vm=" + nb) != std::string::npos;
  })) << log();
  file.poll();
  const size_t b_frames = file.frames(nb).size(), a_frames = file.frames(na).size();
  EXPECT_TRUE(wait_for(file, 60s, [&] { return file.frames(na).size() >= a_frames + 5; })) << log();
  EXPECT_EQ(file.frames(nb).size(), b_frames);
  EXPECT_TRUE(crawl.running()) << log();

  // 5. SIGTERM: clean exit, every line complete.
  crawl.signal(SIGTERM);
  EXPECT_EQ(crawl.wait(60), 0) << log();
  EXPECT_TRUE(file.poll()) << file.bad_line();
  const std::string all = read_file(out);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back(), '\n');
  EXPECT_THAT(log(), testing::HasSubstr("crawl stopped (SIGTERM)"));
  std::cout << "nfm crawl's events:\n" << log();
}

}  // namespace
