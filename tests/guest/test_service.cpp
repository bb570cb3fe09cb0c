// `nfm crawl` as a service (packaging/nfm-crawl.service): options from a config file
// under the command line's, --print-config, SIGHUP reloading the configuration while
// frames keep coming, sd_notify (READY, STATUS, RELOADING, WATCHDOG) and journal
// entries whose fields name the VM and the event. A pooled 6.1 guest, only read.
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "fixture.h"
#include "nfm_cli.h"

namespace {

using nfm::testing::CliResult;
using nfm::testing::NfmProcess;
using nfm::testing::run_nfm;
using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

const int kGuests = nfm::lab::declare_guests({{.kernel = "6.1-cloud", .ram_mib = 384}});

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "nfm-service-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Complete frames in a JSON Lines file, each checked to be one; -1 on a broken line.
int frames_in(const std::string& path, const std::function<void(const json&)>& each = {}) {
  std::istringstream in(read_file(path));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a line still being written has no newline yet
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("meta")) return -1;
    if (each) each(j);
    ++n;
  }
  return n;
}

bool wait_until(std::chrono::seconds timeout, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return done();
}

// A datagram socket like systemd's notify and journal sockets: collects what is sent.
class DatagramSink {
 public:
  explicit DatagramSink(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~DatagramSink() {
    close(fd_);
    unlink(path_.c_str());
  }
  DatagramSink(const DatagramSink&) = delete;
  DatagramSink& operator=(const DatagramSink&) = delete;
  bool bound() const { return bound_; }

  // Everything received so far, oldest first.
  const std::vector<std::string>& poll() {
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd_, buf, sizeof buf, 0)) > 0) messages_.emplace_back(buf, n);
    return messages_;
  }
  // The index of the first message at or after `from` that contains `text`, or -1.
  int find(const std::string& text, size_t from = 0) {
    poll();
    for (size_t i = from; i < messages_.size(); ++i)
      if (messages_[i].find(text) != std::string::npos) return static_cast<int>(i);
    return -1;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::vector<std::string> messages_;
};

TEST(Service, ConfigFileSetsWhatTheCommandLineDoesNot) {
  TempDir dir;
  const std::string conf = dir.file("crawl.conf");
  write_file(conf,
             "# a comment\n"
             "emit = [\"file:/var/tmp/a.jsonl\", \"stdout\"]\n"
             "interval = \"250ms\"\n"
             "no-libvirt = true\n"
             "match = [\"web-*\"]\n"
             "max-crawl-bytes = \"64M\"\n");
  CliResult r = run_nfm({"crawl", "--config", conf, "--interval", "2s", "--print-config"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, testing::HasSubstr("\nemit = [\"file:/var/tmp/a.jsonl\", \"stdout\"]\n"));
  EXPECT_THAT(r.out, testing::HasSubstr("\ninterval = \"2s\"\n"));  // the command line wins
  EXPECT_THAT(r.out, testing::HasSubstr("\nno-libvirt = true\n"));
  EXPECT_THAT(r.out, testing::HasSubstr("\nno-profile-cache = false\n"));
  EXPECT_THAT(r.out, testing::HasSubstr("\nmatch = [\"web-*\"]\n"));
  EXPECT_THAT(r.out, testing::HasSubstr("\nmax-crawl-bytes = \"64M\"\n"));
  EXPECT_THAT(r.out, testing::HasSubstr("\nfeatures = \"all\"\n"));  // a default
  EXPECT_THAT(r.out, testing::HasSubstr("\n# TARGET = []\n"));       // unset: commented out

  // What it prints is a config file that says the same again.
  const std::string printed = dir.file("printed.conf");
  write_file(printed, r.out);
  CliResult again = run_nfm({"crawl", "--config", printed, "--print-config"});
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(again.out, r.out);
}

TEST(Service, ConfigErrorsNameTheFileAndTheKey) {
  TempDir dir;
  const std::string conf = dir.file("crawl.conf");
  write_file(conf, "interval = \"1s\"\nbogus = 1\n");
  CliResult r = run_nfm({"crawl", "--config", conf, "--print-config"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "nfm: error: --config " + conf +
                       ": \"bogus\" is not an option of nfm crawl (see nfm crawl --help)\n");

  write_file(conf, "access = \"sideways\"\n");
  r = run_nfm({"crawl", "--config", conf, "--print-config"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::StartsWith("nfm: error: --config " + conf + ": access: "));
  EXPECT_THAT(r.err, testing::HasSubstr("sideways"));

  write_file(conf, "[crawl]\ninterval = \"1s\"\n");
  r = run_nfm({"crawl", "--config", conf, "--print-config"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, testing::HasSubstr("sections are not used"));

  write_file(conf, "config = \"/etc/other.conf\"\n");
  r = run_nfm({"crawl", "--config", conf, "--print-config"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "nfm: error: --config " + conf +
                       ": \"config\" can only be given on the command line\n");

  // A scalar twice is an error, also apart; a repeatable option collects every line.
  write_file(conf, "interval = \"1s\"\nfeatures = \"all\"\ninterval = \"2s\"\n");
  r = run_nfm({"crawl", "--config", conf, "--print-config"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "nfm: error: --config " + conf + ": \"interval\" is set more than once\n");
  write_file(conf, "emit = [\"stdout\"]\nfeatures = \"all\"\nemit = [\"file:/var/tmp/b\"]\n");
  r = run_nfm({"crawl", "--config", conf, "--print-config"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, testing::HasSubstr("\nemit = [\"stdout\", \"file:/var/tmp/b\"]\n"));

  r = run_nfm({"crawl", "--emit", "stdout", "--emit", "stdout", "--count", "1", "qemu:1"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "nfm: error: --emit stdout is given twice\n");

  r = run_nfm({"crawl", "--config", dir.file("missing.conf"), "--print-config"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "nfm: error: --config " + dir.file("missing.conf") + ": cannot read the file\n");
}

// One crawler process, reconfigured twice by SIGHUP (once with a broken file), told
// systemd's way what it does.
TEST(Service, SighupReloadsTheConfigurationWhileFramesKeepComing) {
  NFM_LAB_GUEST(g, "6.1-cloud");
  TempDir dir;
  const std::string conf = dir.file("crawl.conf");
  const std::string a = dir.file("a.jsonl"), b = dir.file("b.jsonl");
  const std::string common = fmt::format(
      "TARGET = [\"qemu:{}\"]\ninterval = \"300ms\"\nno-libvirt = true\nlog = \"logfmt\"\n",
      g->pid());
  write_file(conf, common + fmt::format("emit = [\"file:{}\"]\nfeatures = \"uname,uptime\"\n", a));

  DatagramSink notify(dir.file("notify"));
  ASSERT_TRUE(notify.bound());
  setenv("NOTIFY_SOCKET", dir.file("notify").c_str(), 1);
  setenv("WATCHDOG_USEC", "1000000", 1);  // pings every 0.5 s
  NfmProcess crawl =
      NfmProcess::start({"crawl", "--config", conf}, dir.file("out"), dir.file("err"));
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");

  ASSERT_TRUE(wait_until(120s, [&] { return frames_in(a) >= 3; })) << read_file(dir.file("err"));
  const int ready = notify.find("READY=1");
  EXPECT_GE(ready, 0) << "no READY=1 from the crawler";
  EXPECT_TRUE(wait_until(10s, [&] { return notify.find("WATCHDOG=1") >= 0; }));
  EXPECT_TRUE(wait_until(10s, [&] { return notify.find("STATUS=1 VMs (1 attached)") >= 0; }))
      << "no STATUS line naming the attached VM";

  // Reload 1: a second sink, another feature list.
  write_file(conf, common + fmt::format("emit = [\"file:{}\", \"file:{}\"]\n"
                                        "features = \"uname,uptime,meminfo\"\n",
                                        a, b));
  const int before_reload = frames_in(a);
  crawl.signal(SIGHUP);
  ASSERT_TRUE(wait_until(120s, [&] { return frames_in(b) >= 3; })) << read_file(dir.file("err"));
  EXPECT_GT(frames_in(a), before_reload + 2) << "the kept sink stopped getting frames";
  const int reloading = notify.find("RELOADING=1");
  ASSERT_GE(reloading, 0);
  EXPECT_GT(notify.find("READY=1", reloading + 1), reloading) << "no READY=1 after the reload";
  EXPECT_THAT(read_file(dir.file("err")), testing::HasSubstr("event=config_reloaded"));
  bool meminfo_in_b = true;
  EXPECT_GT(frames_in(b, [&](const json& j) { meminfo_in_b &= j.contains("meminfo"); }), 0);
  EXPECT_TRUE(meminfo_in_b) << "the reloaded feature list was not used";

  // Reload 2: a broken file leaves the running configuration alone.
  write_file(conf, common + "bogus = 1\n");
  crawl.signal(SIGHUP);
  ASSERT_TRUE(wait_until(30s, [&] {
    return read_file(dir.file("err")).find("event=reload_failed") != std::string::npos;
  }));
  EXPECT_THAT(read_file(dir.file("err")),
              testing::HasSubstr("\\\"bogus\\\" is not an option of nfm crawl"));
  const int b_before = frames_in(b);
  EXPECT_TRUE(wait_until(30s, [&] { return frames_in(b) >= b_before + 3; }))
      << "frames stopped after a failed reload";

  crawl.signal(SIGTERM);
  EXPECT_EQ(crawl.wait(60), 0) << read_file(dir.file("err"));
  EXPECT_GE(notify.find("STOPPING=1"), 0);
  // Every line of both files is a whole frame, of the guest.
  for (const auto& path : {a, b}) {
    int of_guest = 0;
    const int n = frames_in(path, [&](const json& j) {
      of_guest += j.at("meta").at("vm").at("pid").get<int64_t>() == g->pid();
    });
    EXPECT_GT(n, 0) << path;
    EXPECT_EQ(of_guest, n) << path;
  }
}

// Runs `nfm ARGS` in a mount namespace of its own whose /run/systemd/journal is a
// tmpfs with our socket in it, its stderr a stream JOURNAL_STREAM names (as systemd
// runs a service): what nfm sends to "the journal" (needs root).
std::vector<std::string> journal_of(const std::vector<std::string>& args, std::string* error) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return {};
  const pid_t child = fork();
  if (child == 0) {
    close(pipefd[0]);
    const auto fail = [&](const char* what) {
      dprintf(pipefd[1], "ERROR %s: %s", what, strerror(errno));
      _exit(1);
    };
    if (unshare(CLONE_NEWNS) != 0) fail("unshare");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("mount private");
    fs::create_directories("/run/systemd/journal");
    if (mount("tmpfs", "/run/systemd/journal", "tmpfs", 0, "mode=0755") != 0) fail("mount");
    DatagramSink journal("/run/systemd/journal/socket");
    if (!journal.bound()) fail("bind");
    const pid_t nfm = fork();
    if (nfm == 0) {
      // As under systemd: stderr is the journal's stream, named by JOURNAL_STREAM.
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, STDERR_FILENO);
      struct stat st {};
      fstat(STDERR_FILENO, &st);
      setenv("JOURNAL_STREAM", fmt::format("{}:{}", st.st_dev, st.st_ino).c_str(), 1);
      std::vector<char*> argv{const_cast<char*>(nfm::testing::nfm_binary())};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    int status = 0;
    waitpid(nfm, &status, 0);
    for (const auto& m : journal.poll()) {
      const std::string record = m + '\x1e';
      if (write(pipefd[1], record.data(), record.size()) < 0) _exit(1);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 2);
  }
  close(pipefd[1]);
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) all.append(buf, n);
  close(pipefd[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (all.rfind("ERROR ", 0) == 0) {
    *error = all;
    return {};
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    *error = fmt::format("nfm exited with status {:#x}", status);
  std::vector<std::string> records;
  std::istringstream in(all);
  std::string r;
  while (std::getline(in, r, '\x1e')) records.push_back(r);
  return records;
}

TEST(Service, JournalEntriesNameTheVmAndTheEvent) {
  if (geteuid() != 0) GTEST_SKIP() << "a private mount namespace for a fake journal needs root";
  NFM_LAB_GUEST(g, "6.1-cloud");
  TempDir dir;
  std::string error;
  const std::vector<std::string> entries =
      journal_of({"crawl", "--count", "2", "--no-libvirt", "--features", "uname", "--emit",
                  "file:" + dir.file("frames.jsonl"), fmt::format("qemu:{}", g->pid())},
                 &error);
  ASSERT_EQ(error, "");
  // The attach, with the VM and the event as fields of their own.
  bool attached = false, stopped = false;
  for (const auto& e : entries) {
    if (e.find("\nEVENT=vm_attached\n") != std::string::npos) {
      attached = true;
      EXPECT_THAT(e, testing::StartsWith("MESSAGE=vm_attached " + g->name() + ": "));
      EXPECT_THAT(e, testing::HasSubstr("\nPRIORITY=6\n"));
      EXPECT_THAT(e, testing::HasSubstr("\nVM=" + g->name() + "\n"));
      EXPECT_THAT(e, testing::HasSubstr(fmt::format("\nVM_PID={}\n", g->pid())));
    }
    stopped |= e.find("\nEVENT=crawl_stopped\n") != std::string::npos;
  }
  EXPECT_TRUE(attached) << entries.size() << " entries, none EVENT=vm_attached";
  EXPECT_TRUE(stopped) << "no EVENT=crawl_stopped entry";
  EXPECT_EQ(frames_in(dir.file("frames.jsonl")), 2);
}

}  // namespace
