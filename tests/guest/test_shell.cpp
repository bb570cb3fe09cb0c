// `nfm shell` on 5.10, 6.1-cloud and 6.12: every frame command prints what the matching
// `nfm CMD` prints; ls/cat/stat from the guest's dentry and page caches agree with the
// guest's own lstat()/readdir()/read() (the reporter's "files" section); a scripted
// interactive session through a pty travels in time (a process started and killed in
// the guest is seen in the past snapshot and shown gone by diff); and a panicked guest
// is still read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "fixture.h"
#include "frame/frame_crawler.h"
#include "kernel/kernel.h"
#include "host/target.h"
#include "nfm_cli.h"
#include "store/frame_sink.h"
#include "workload.h"


namespace {

using nfm::testing::CliResult;
using nfm::testing::run_nfm;
namespace workload = nfm::lab::workload;

// panic=0 on 6.1-cloud: its last test panics it and reads it again.
// Guests of their own: the tests spawn and kill processes and crash one guest.
const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384, .exclusive = true},
    {.kernel = "6.1-cloud", .ram_mib = 384, .append = "panic=0", .exclusive = true},
    {.kernel = "6.12", .ram_mib = 384, .exclusive = true},
});

std::string target_of(const nfm::lab::Guest* g) { return "qemu:" + std::to_string(g->pid()); }

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

uint64_t fnv1a(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// The reporter's "files" section: "PATH MODE NLINK UID GID SIZE MTIME INO MAJ,MIN FNV|-".
struct TruthFile {
  std::string path;
  uint32_t mode = 0;
  uint64_t nlink = 0, uid = 0, gid = 0, size = 0, ino = 0;
  int64_t mtime = 0;
  std::string rdev, fnv;
};

std::map<std::string, TruthFile> truth_files(const nfm::lab::Guest* g) {
  std::map<std::string, TruthFile> out;
  const std::string* section = g->truth().section("files");
  if (!section) return out;
  for (const std::string& l : lines(*section)) {
    auto w = words(l);
    if (w.size() != 10) continue;
    TruthFile f;
    f.path = w[0];
    f.mode = std::stoul(w[1], nullptr, 8);
    f.nlink = std::stoull(w[2]);
    f.uid = std::stoull(w[3]);
    f.gid = std::stoull(w[4]);
    f.size = std::stoull(w[5]);
    f.mtime = std::stoll(w[6]);
    f.ino = std::stoull(w[7]);
    f.rdev = w[8];
    f.fnv = w[9];
    out[f.path] = f;
  }
  return out;
}

std::string mode_text(uint32_t mode) {
  std::string s = "?---------";
  switch (mode & 0170000) {
    case 0040000: s[0] = 'd'; break;
    case 0100000: s[0] = '-'; break;
    case 0120000: s[0] = 'l'; break;
    case 0020000: s[0] = 'c'; break;
    case 0060000: s[0] = 'b'; break;
    case 0010000: s[0] = 'p'; break;
    case 0140000: s[0] = 's'; break;
  }
  for (int i = 0; i < 9; ++i)
    if (mode & (0400 >> i)) s[1 + i] = "rwxrwxrwx"[i];
  if (mode & 01000) s[9] = (mode & 1) ? 't' : 'T';
  return s;
}

// Runs `nfm ARGS` with `input` on its stdin (a pipe: the shell reads commands from it).
CliResult run_with_input(const std::vector<std::string>& args, const std::string& input) {
  CliResult r;
  int in[2], out[2], err[2];
  if (pipe(in) || pipe(out) || pipe(err)) return r;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
    std::vector<char*> argv{const_cast<char*>(nfm::testing::nfm_binary())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (write(in[1], input.data(), input.size()) != static_cast<ssize_t>(input.size())) {
  }
  close(in[1]);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (int open = 2; open > 0 && std::chrono::steady_clock::now() < deadline;) {
    if (poll(fds, 2, 1000) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[65536];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      } else {
        (i ? r.err : r.out).append(buf, n);
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// An interactive `nfm shell` on a pseudo-terminal, driven line by line.
class PtyShell {
 public:
  explicit PtyShell(const std::string& target) {
    pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      setenv("TERM", "dumb", 1);
      execl(nfm::testing::nfm_binary(), nfm::testing::nfm_binary(), "shell", target.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~PtyShell() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  bool started() const { return pid_ > 0 && fd_ >= 0; }

  // Everything printed up to (and including) the next prompt, "" on timeout or exit.
  std::string until_prompt(int timeout_s = 120) {
    static const std::regex prompt(R"(nfm \S+ #\d+ \d\d:\d\d:\d\d( \(past\))?> $)");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      // Prompts end the output: look at the tail only.
      const std::string tail = buf_.substr(buf_.size() > 200 ? buf_.size() - 200 : 0);
      if (std::regex_search(tail, m, prompt)) {
        std::string out = std::move(buf_);
        buf_.clear();
        last_prompt_ = m.str();
        return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) continue;
      char b[65536];
      const ssize_t n = read(fd_, b, sizeof b);
      if (n <= 0) return {};
      buf_.append(b, n);
    }
    return {};
  }
  std::string run(const std::string& line) {
    const std::string l = line + "\n";
    if (write(fd_, l.data(), l.size()) != static_cast<ssize_t>(l.size())) return {};
    return until_prompt();
  }
  const std::string& last_prompt() const { return last_prompt_; }
  // Sends "quit" and waits for the exit status.
  int quit() {
    const std::string l = "quit\n";
    if (write(fd_, l.data(), l.size()) < 0) return -1;
    char b[4096];
    for (pollfd p{fd_, POLLIN, 0}; poll(&p, 1, 10000) > 0 && read(fd_, b, sizeof b) > 0;) {
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buf_, last_prompt_;
};

class Shell : public testing::TestWithParam<std::string> {};

// On a paused guest, `nfm shell -c "CMD; CMD; ..."` prints exactly what `nfm CMD` prints,
// one after the other.
TEST_P(Shell, FrameCommandsPrintWhatTheCommandsPrint) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->request_truth().ok());
  const std::string target = target_of(g);
  const nfm::lab::Process* files = g->truth().find_process(workload::files_comm);
  ASSERT_NE(files, nullptr);
  const std::string pid = std::to_string(files->pid);
  const std::vector<std::vector<std::string>> commands = {
      {"ps"},        {"ps", "-p", "1"},   {"ps", "--json"},     {"lsmod"},
      {"netstat"},   {"netstat", "-t"},   {"ifconfig"},         {"lsof"},
      {"lsof", "-p", pid}, {"maps", "-p", pid}, {"maps", "--json"}, {"dmesg"},
      {"uname"},     {"cpuinfo"},         {"meminfo"},          {"uptime"},
      {"uptime", "--json"}};
  ASSERT_TRUE(g->pause().ok());
  std::string script, expected, expected_err;
  for (const auto& c : commands) {
    std::string line;
    for (const auto& w : c) line += (line.empty() ? "" : " ") + w;
    script += line + "; ";
    std::vector<std::string> args = c;
    args.push_back(target);
    CliResult r = run_nfm(args);
    ASSERT_EQ(r.status, 0) << line << ": " << r.err;
    EXPECT_NE(r.out, "") << line;
    expected += r.out;
    expected_err += r.err;  // warnings the guest deserves (counters not exact on 5.10)
  }
  CliResult shell = run_nfm({"shell", target, "-c", script});
  ASSERT_TRUE(g->resume().ok());
  ASSERT_EQ(shell.status, 0) << shell.err;
  EXPECT_EQ(shell.err, expected_err);
  // Line by line first, for a readable failure.
  const auto want = lines(expected), got = lines(shell.out);
  for (size_t i = 0; i < std::min(want.size(), got.size()); ++i)
    ASSERT_EQ(got[i], want[i]) << "line " << i;
  EXPECT_EQ(shell.out, expected);

  // Mistakes are one-line errors and a failing status.
  CliResult bad = run_nfm({"shell", target, "-c", "uname; frobnicate; ps -p x"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_THAT(bad.err, testing::HasSubstr("nfm: error: unknown command 'frobnicate'"));
  EXPECT_THAT(bad.err, testing::HasSubstr("nfm: error: ps: bad PID 'x'"));
  EXPECT_THAT(bad.out, testing::HasSubstr("nfm-guest"));
}

// ls -l, stat and cat from the dentry and page caches, against the guest's own lstat(),
// readdir() and read() of the same paths (all on in-memory filesystems here: rootfs,
// tmpfs mounted on /tmp, devtmpfs on /dev, so every name and page is cached).
TEST_P(Shell, FilesMatchTheGuest) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->send_command("files").ok());  // the reporter's files section, from now on
  ASSERT_TRUE(g->request_truth().ok());
  const auto truth = truth_files(g);
  ASSERT_GT(truth.size(), 20u) << "the reporter's files section";
  const std::string target = target_of(g);
  for (const std::string dir : {"/", "/etc", "/tmp", "/dev"}) {
    SCOPED_TRACE(dir);
    CliResult r = run_nfm({"shell", target, "-c", "ls -l " + dir});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "") << "in-memory filesystems list completely";
    std::map<std::string, std::vector<std::string>> ours;
    for (const std::string& l : lines(r.out)) {
      auto w = words(l);
      ASSERT_GE(w.size(), 9u) << l;
      ours[w.back()] = w;
    }
    size_t compared = 0;
    for (const auto& [path, t] : truth) {
      if (path == dir) continue;
      const std::string prefix = dir == "/" ? "/" : dir + "/";
      if (!path.starts_with(prefix) || path.find('/', prefix.size()) != std::string::npos)
        continue;
      const std::string name = path.substr(prefix.size());
      auto it = ours.find(name);
      if (it == ours.end()) {
        ADD_FAILURE() << "ls " << dir << " misses " << name;
        continue;
      }
      const auto& w = it->second;
      EXPECT_EQ(w[0], mode_text(t.mode)) << path;
      EXPECT_EQ(w[2], std::to_string(t.uid)) << path;
      EXPECT_EQ(w[3], std::to_string(t.gid)) << path;
      // /proc and /sys compute these on the fly; the inode holds something else.
      if (path != "/proc" && path != "/sys") {
        EXPECT_EQ(w[1], std::to_string(t.nlink)) << path;
        if (w[0][0] == 'c' || w[0][0] == 'b')
          EXPECT_EQ(w[4] + w[5], t.rdev) << path;  // "1," "3" vs "1,3"
        else
          EXPECT_EQ(w[4], std::to_string(t.size)) << path;
      }
      ours.erase(it);
      ++compared;
    }
    EXPECT_GE(compared, 2u);
    for (const auto& [name, w] : ours) ADD_FAILURE() << "ls " << dir << " has extra " << name;
  }

  // stat and cat of the known files, read from stdin like a script.
  std::string input;
  for (const std::string& f : {std::string(workload::known_file), std::string(workload::data_file)})
    input += "stat " + f + "\n";
  CliResult st = run_with_input({"shell", target}, input);
  ASSERT_EQ(st.status, 0) << st.err;
  EXPECT_THAT(st.out, testing::Not(testing::HasSubstr("> "))) << "no prompts without a tty";
  for (const std::string& f : {std::string(workload::known_file), std::string(workload::data_file)}) {
    SCOPED_TRACE(f);
    ASSERT_TRUE(truth.count(f));
    const TruthFile& t = truth.at(f);
    const std::string text = st.out.substr(st.out.find("  File: " + f));
    std::smatch m;
    ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(Size: (\d+))")));
    EXPECT_EQ(m[1], std::to_string(t.size));
    ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(Inode: (\d+) +Links: (\d+))")));
    EXPECT_EQ(m[1], std::to_string(t.ino));
    EXPECT_EQ(m[2], std::to_string(t.nlink));
    ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(Access: \((\d+)/)")));
    EXPECT_EQ(std::stoul(m[1], nullptr, 8), t.mode & 07777);
    ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(Modify: (\S+ \S+))")));
    std::tm tm{};
    ASSERT_NE(strptime(m[1].str().c_str(), "%Y-%m-%d %H:%M:%S", &tm), nullptr);
    EXPECT_EQ(timegm(&tm), t.mtime);

    CliResult cat = run_nfm({"shell", target, "-c", "cat " + f});
    ASSERT_EQ(cat.status, 0) << cat.err;
    EXPECT_EQ(cat.err, "");
    EXPECT_EQ(cat.out.size(), t.size);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a(cat.out)));
    EXPECT_EQ(hex, t.fnv) << "contents differ from the guest's read()";
  }
  CliResult known = run_nfm({"shell", target, "-c", "cat " + std::string(workload::known_file)});
  EXPECT_EQ(known.out, workload::known_file_content);

  // What is not there is said so.
  CliResult missing = run_nfm({"shell", target, "-c", "cat /etc/no-such-file; ls /etc"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_THAT(missing.err, testing::HasSubstr("/etc/no-such-file: not in the guest's dentry cache"));
  EXPECT_THAT(missing.out, testing::HasSubstr("nfm-known.txt"));
}

// An interactive session on a pty: a process the guest starts and kills is seen by the
// snapshot taken while it ran, `seed` goes back to it, `diff` shows it come and go.
TEST_P(Shell, TimeTravelInAnInteractiveSession) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string name = "nfm-tt-" + std::to_string(getpid() % 1000);
  PtyShell shell(target_of(g));
  ASSERT_TRUE(shell.started());
  const std::string banner = shell.until_prompt();
  ASSERT_THAT(banner, testing::HasSubstr("read-only. Type help."));
  EXPECT_THAT(shell.last_prompt(), testing::HasSubstr("#1 "));
  EXPECT_THAT(shell.run("help"), testing::HasSubstr("diff N [M]"));

  ASSERT_TRUE(g->send_command("spawn " + name).ok());
  ASSERT_TRUE(g->request_truth().ok());
  const nfm::lab::Process* p = g->truth().find_process(name);
  ASSERT_NE(p, nullptr) << "the reporter did not spawn " << name;
  const int pid = p->pid;
  EXPECT_THAT(shell.run("sync"), testing::HasSubstr("snapshot #2 at "));
  const std::string seen = shell.run("ps --json -p " + std::to_string(pid));
  EXPECT_THAT(seen, testing::HasSubstr("\"comm\": \"" + name + "\""));

  ASSERT_TRUE(g->send_command("kill " + name).ok());
  ASSERT_TRUE(g->request_truth().ok());
  ASSERT_EQ(g->truth().find_process(name), nullptr);
  EXPECT_THAT(shell.run("sync"), testing::HasSubstr("snapshot #3 at "));
  EXPECT_THAT(shell.run("ps -p " + std::to_string(pid)),
              testing::Not(testing::HasSubstr(" " + std::to_string(pid) + " ")));

  EXPECT_THAT(shell.run("seed 2"), testing::HasSubstr("at snapshot #2"));
  EXPECT_THAT(shell.last_prompt(), testing::HasSubstr("#2 "));
  EXPECT_THAT(shell.last_prompt(), testing::HasSubstr("(past)"));
  EXPECT_THAT(shell.run("ps --json -p " + std::to_string(pid)),
              testing::HasSubstr("\"comm\": \"" + name + "\""));
  const std::string history = shell.run("history");
  EXPECT_THAT(history, testing::ContainsRegex(R"(\*   2  20)"));
  EXPECT_THAT(history, testing::ContainsRegex(R"(   3  20)"));

  const std::string gone = shell.run("diff 2 3");
  EXPECT_THAT(gone, testing::HasSubstr("- pid " + std::to_string(pid) + " " + name));
  EXPECT_THAT(gone, testing::HasSubstr("exited"));
  const std::string came = shell.run("diff 1 2");
  EXPECT_THAT(came, testing::HasSubstr("+ pid " + std::to_string(pid) + " " + name));

  // File commands read the live guest and say so when the console is in the past.
  const std::string cat = shell.run("cat " + std::string(workload::known_file));
  EXPECT_THAT(cat, testing::HasSubstr("line 2"));
  EXPECT_THAT(cat, testing::HasSubstr("not snapshot #2"));
  EXPECT_THAT(shell.run("at -1d"), testing::HasSubstr("no snapshot at or before"));
  shell.run("seed");
  EXPECT_THAT(shell.last_prompt(), testing::Not(testing::HasSubstr("(past)")));
  EXPECT_EQ(shell.quit(), 0);
}

// Snapshots from a frame store: two frames of the guest written to SQLite (a process
// running in the first, gone in the second), then `nfm shell --store` travels between them.
TEST_P(Shell, SnapshotsFromAFrameStore) {
  if (GetParam() != "6.12") GTEST_SKIP() << "one guest is enough for the store";
  NFM_LAB_GUEST(g, GetParam());
  const std::string db = g->run_dir() + "/shell-frames.db";
  const std::string name = "nfm-st-" + std::to_string(getpid() % 1000);
  int pid = 0;
  {
    auto sink = nfm::open_sink("sqlite:" + db, {});
    ASSERT_TRUE(sink.ok()) << sink.error().to_string();
    auto memory = nfm::open_target(target_of(g));
    ASSERT_TRUE(memory.ok()) << memory.error().to_string();
    auto kernel = nfm::Kernel::attach(std::move(memory).value());
    ASSERT_TRUE(kernel.ok()) << kernel.error().to_string();
    nfm::FrameCrawler crawler(**kernel);
    ASSERT_TRUE(g->send_command("spawn " + name).ok());
    ASSERT_TRUE(g->request_truth().ok());
    const nfm::lab::Process* p = g->truth().find_process(name);
    ASSERT_NE(p, nullptr);
    pid = p->pid;
    for (int i = 0; i < 2; ++i) {
      if (i == 1) {
        ASSERT_TRUE(g->send_command("kill " + name).ok());
        ASSERT_TRUE(g->request_truth().ok());
      }
      nfm::Frame frame = crawler.crawl();
      frame.meta.vm.name = "shell-test";
      (*sink)->write(frame);
    }
    (*sink)->flush();
    EXPECT_EQ((*sink)->stats().frames_written, 2u) << (*sink)->stats().last_error;
  }
  const std::string p = std::to_string(pid);
  CliResult r = run_nfm({"shell", "--store", "sqlite:" + db, "-c",
                         "history; ps --json -p " + p + "; seed 1; ps --json -p " + p +
                             "; diff 1 2"});
  ASSERT_EQ(r.status, 0) << r.err;
  const size_t seeded = r.out.find("at snapshot #1");
  ASSERT_NE(seeded, std::string::npos) << r.out;
  EXPECT_THAT(r.out.substr(0, seeded), testing::Not(testing::HasSubstr("\"comm\": \"" + name)));
  EXPECT_THAT(r.out.substr(seeded), testing::HasSubstr("\"comm\": \"" + name + "\""));
  EXPECT_THAT(r.out, testing::HasSubstr("- pid " + p + " " + name));
  // Files are not in frames: the file commands say so.
  CliResult cat = run_nfm({"shell", "--store", "sqlite:" + db, "--vm", "shell-test", "-c",
                           "cat /etc/nfm-known.txt"});
  EXPECT_EQ(cat.status, 1);
  EXPECT_THAT(cat.err, testing::HasSubstr("snapshots from a store hold no files"));
}

// Last (on the guest booted with panic=0): the kernel is dead, the console still works.
TEST_P(Shell, WorksOnAPanickedGuest) {
  if (GetParam() != "6.1-cloud") GTEST_SKIP() << "one guest is enough to crash";
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->request_truth().ok());
  const nfm::lab::Process* files = g->truth().find_process(workload::files_comm);
  ASSERT_NE(files, nullptr);
  ASSERT_TRUE(g->crash().ok());
  CliResult r = run_nfm({"shell", target_of(g), "-c",
                         "dmesg; ps -p " + std::to_string(files->pid) + "; cat " +
                             std::string(workload::known_file)});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, testing::HasSubstr("Kernel panic - not syncing"));
  EXPECT_THAT(r.out, testing::HasSubstr(std::string(workload::files_comm)));
  EXPECT_THAT(r.out, testing::HasSubstr(std::string(workload::known_file_content)));
}

INSTANTIATE_TEST_SUITE_P(Guests, Shell, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
