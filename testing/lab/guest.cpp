#include "guest.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#ifndef NFM_LAB_GUEST_DIR
#error "NFM_LAB_GUEST_DIR (testing/guest in the source tree) must be defined"
#endif

namespace nfm::lab {
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

Error sys_error(const std::string& what) {
  return make_error(Errc::io, what + ": " + std::strerror(errno));
}

std::string read_file(const std::string& path, size_t tail = 0) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (tail && s.size() > tail) s = s.substr(s.size() - tail);
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) i++;
  return s.substr(i);
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    ::close(fd);
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

std::string safe_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') c = '_';
  return s;
}

// Run dirs of lab processes that died without cleaning up (SIGKILL, crash): each dir
// names its owner's pid in "owner" and its RAM file, if any, in "memory_file".
void remove_stale_run_dirs(const std::string& tmp) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tmp, ec)) {
    if (!entry.path().filename().string().starts_with("nfm-lab-")) continue;
    std::string owner = read_file((entry.path() / "owner").string());
    if (owner.empty()) continue;  // being set up right now, or not ours
    pid_t pid = static_cast<pid_t>(std::strtol(owner.c_str(), nullptr, 10));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::string ram = trim(read_file((entry.path() / "memory_file").string()));
    if (ram.starts_with("/dev/shm/nfm-lab-") || ram.starts_with("/var/tmp/nfm-lab-"))
      fs::remove(ram, ec);
    fs::remove_all(entry.path(), ec);
  }
}

}  // namespace

const char* backing_name(Backing b) {
  switch (b) {
    case Backing::anonymous:
      return "anonymous";
    case Backing::file:
      return "file";
    case Backing::disk_file:
      return "disk_file";
    case Backing::memfd:
      return "memfd";
    case Backing::memfd_unsealed:
      return "memfd_unsealed";
  }
  return "?";
}

Result<Backing> parse_backing(std::string_view s) {
  if (s == "anonymous") return Backing::anonymous;
  if (s == "file") return Backing::file;
  if (s == "disk_file") return Backing::disk_file;
  if (s == "memfd") return Backing::memfd;
  if (s == "memfd_unsealed") return Backing::memfd_unsealed;
  return make_error(Errc::invalid_argument,
                    "backing must be anonymous, file, disk_file, memfd or memfd_unsealed, not '" +
                        std::string(s) + "'");
}

Result<std::string> run_capture(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return sys_error("pipe");
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    ::dup2(fds[1], 1);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return make_error(Errc::io, fmt::format("{} failed (status {})", argv[0], status));
  return out;
}

Result<std::unique_ptr<Guest>> Guest::boot(const GuestOptions& opts) {
  auto g = start(opts);
  if (!g) return g.error();
  if (auto r = (*g)->wait_ready(opts.timeout); !r) return r.error();
  return std::move(*g);
}

Result<std::unique_ptr<Guest>> Guest::start(const GuestOptions& opts) {
  auto g = prepare(opts);
  if (!g) return g.error();
  if (auto r = (*g)->launch(); !r) return r.error();
  return std::move(*g);
}

Result<std::unique_ptr<Guest>> Guest::prepare(const GuestOptions& opts) {
  std::unique_ptr<Guest> g(new Guest());
  g->opts_ = opts;
  g->name_ = opts.name.empty() ? "nfm-" + opts.kernel : opts.name;
  const std::string scripts = NFM_LAB_GUEST_DIR;

  auto kdir = run_capture({scripts + "/fetch-kernel.sh", opts.kernel});
  if (!kdir)
    return make_error(Errc::not_found,
                      "fetch-kernel.sh " + opts.kernel + ": " + kdir.error().message);
  g->kernel_dir_ = trim(*kdir);

  const char* tmp_env = std::getenv("TMPDIR");
  const std::string tmp = tmp_env && *tmp_env ? tmp_env : "/tmp";
  remove_stale_run_dirs(tmp);
  std::string tmpl = tmp + "/nfm-lab-" + safe_name(g->name_) + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return sys_error("mkdtemp " + tmpl);
  g->run_dir_ = tmpl;
  g->qemu_dir_ = tmpl;
  std::ofstream(g->run_dir_ + "/owner") << ::getpid() << "\n";
  const std::string initrd = g->run_dir_ + "/initramfs.cpio.gz";
  if (auto r = run_capture({scripts + "/build-initramfs.sh", g->kernel_dir_, initrd}); !r)
    return make_error(Errc::io, "build-initramfs.sh: " + r.error().message);
  if (!opts.extra_files.empty()) {
    // Linux unpacks concatenated initramfs archives in order: the extra files land
    // on top of the lab's root.
    std::string script =
        "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; mkdir -p \"$d/lib/nfm-extra\"; "
        "for f in \"${@:2}\"; do cp \"$f\" \"$d/lib/nfm-extra/\"; done; "
        "(cd \"$d\" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) >> "
        "\"$1\"";
    std::vector<std::string> argv{"bash", "-c", script, "extra-files", initrd};
    argv.insert(argv.end(), opts.extra_files.begin(), opts.extra_files.end());
    if (auto r = run_capture(argv); !r)
      return make_error(Errc::io, "adding extra files to the initramfs: " + r.error().message);
  }

  std::string machine = opts.machine;
  std::string user_net = "user,id=n0,restrict=on";
  for (const std::string& o : opts.user_net) user_net += "," + o;
  std::vector<std::string> args = {
      "qemu-system-x86_64", "-accel", "tcg", "-nographic", "-no-reboot", "-m",
      std::to_string(opts.ram_mib), "-smp", std::to_string(opts.cpus), "-name", g->name_, "-kernel",
      g->kernel_dir_ + "/vmlinuz", "-initrd", initrd,
      // qboot instead of SeaBIOS: a minimal firmware that loads the kernel and initramfs
      // through fw_cfg DMA and jumps to it. Under TCG SeaBIOS's POST and its byte-wise
      // copy of the initramfs cost seconds of every boot.
      "-bios", "qboot.rom",
      // quiet: printk to an emulated UART is slow; the full log is in /dev/kmsg anyway.
      // no_timer_check: on a busy host TCG can miss the IO-APIC timer check's window
      // and the kernel panics at boot ("IO-APIC + timer doesn't work!").
      "-append", fmt::format("console=ttyS0 panic=-1 quiet no_timer_check {}", opts.append),
      "-netdev", user_net, "-device", opts.nic + ",netdev=n0", "-serial",
      "file:" + g->run_dir_ + "/serial0.log",
      // wait=on: QEMU starts the guest only once we are connected, so nothing is lost.
      "-chardev",
      // No logfile= here: QEMU would write it one byte per syscall, as the guest's
      // UART sends them (about 10% of a boot's CPU, testing/lab/README.md); the
      // reader keeps serial1.log in the chunks it reads.
      fmt::format("socket,id=s1,path={}/serial1.sock,server=on,wait=on", g->run_dir_), "-serial",
      "chardev:s1", "-qmp", fmt::format("unix:{}/qmp.sock,server=on,wait=off", g->run_dir_),
      "-monitor", "none"};
  if (!opts.cpu_model.empty()) args.insert(args.end(), {"-cpu", opts.cpu_model});
  const std::string size = std::to_string(opts.ram_mib) + "M";
  if (opts.backing == Backing::file || opts.backing == Backing::disk_file) {
    // tmpfs pages never leave RAM but for swap; a disk file's can be evicted.
    std::string path = opts.backing == Backing::file
                           ? "/dev/shm/nfm-lab-" + safe_name(g->name_) + "-XXXXXX"
                           : "/var/tmp/nfm-lab-" + safe_name(g->name_) + "-XXXXXX";
    int fd = ::mkstemp(path.data());
    if (fd < 0) return sys_error("mkstemp " + path);
    ::close(fd);
    g->memory_file_ = path;
    std::ofstream(g->run_dir_ + "/memory_file") << path << "\n";
    args.insert(args.end(),
                {"-object", fmt::format("memory-backend-file,id=ram0,size={},mem-path={},share=on",
                                        size, path)});
    machine += ",memory-backend=ram0";
  } else if (opts.backing == Backing::memfd || opts.backing == Backing::memfd_unsealed) {
    // QEMU seals its memfd against shrinking unless told not to.
    const char* seal = opts.backing == Backing::memfd_unsealed ? ",seal=off" : "";
    args.insert(
        args.end(),
        {"-object", fmt::format("memory-backend-memfd,id=ram0,size={},share=on{}", size, seal)});
    machine += ",memory-backend=ram0";
  }
  args.insert(args.end(), {"-machine", machine});
  args.insert(args.end(), opts.qemu_args.begin(), opts.qemu_args.end());
  {
    std::ofstream cmd(g->run_dir_ + "/qemu.cmdline");
    for (auto& a : args) cmd << a << "\n";
  }
  g->qemu_args_ = std::move(args);
  return g;
}

Result<void> Guest::launch() {
  if (pid_ > 0) return make_error(Errc::invalid_argument, "guest " + name_ + " already launched");
  Guest* g = this;
  auto& args = qemu_args_;
  const std::string qemu_log = g->run_dir_ + "/qemu.log";
  // Everything the child needs is built before fork: other threads may hold malloc's lock.
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = ::getpid();
  g->started_ = Clock::now();
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    // QEMU must not outlive the test (this fires when the forking thread exits).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(qemu_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in, 0), ::dup2(out, 1), ::dup2(out, 2);
    ::close_range(3, ~0u, 0);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  g->pid_ = pid;

  // Connect to the reporter's serial port; QEMU waits for us before running the guest.
  const std::string sock = g->run_dir_ + "/serial1.sock";
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while ((g->serial_fd_ = connect_unix(sock)) < 0) {
    if (!g->running() || Clock::now() > deadline)
      return make_error(Errc::io,
                        "QEMU did not open its serial socket: " + read_file(qemu_log, 2000));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  g->log_fd_ = ::open((g->run_dir_ + "/serial1.log").c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  g->reader_ = std::thread([g] { g->reader_loop(); });
  return {};
}

namespace {
// This process's attached guests: taking one drops the truth holds on the others, so two
// programs never wait for each other's guest (no lock-order deadlock).
std::mutex g_attached_mu;
std::set<Guest*> g_attached;
}  // namespace

Result<std::unique_ptr<Guest>> Guest::attach(const SharedGuestInfo& info) {
  std::unique_ptr<Guest> g(new Guest());
  g->attached_ = true;
  g->opts_ = info.options;
  g->name_ = info.name;
  g->qemu_dir_ = info.run_dir;
  g->kernel_dir_ = info.kernel_dir;
  g->pid_ = info.pid;
  g->boot_time_ = info.boot_time;
  g->started_ = Clock::now();
  if (::kill(info.pid, 0) != 0) return sys_error("shared guest " + info.name + " (QEMU pid)");
  const std::string lock_path = info.run_dir + "/lock";
  g->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (g->lock_fd_ < 0) return sys_error("open " + lock_path);
  // Scratch space of this process: programs sharing the guest write files of the same names.
  const char* tmp_env = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp_env && *tmp_env ? tmp_env : "/tmp") + "/nfm-lab-" +
                     safe_name(info.name) + "-attached-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return sys_error("mkdtemp " + tmpl);
  g->run_dir_ = tmpl;
  std::ofstream(g->run_dir_ + "/owner") << ::getpid() << "\n";
  g->reader_ = std::thread([p = g.get()] { p->tail_loop(); });
  std::lock_guard lock(g_attached_mu);
  g_attached.insert(g.get());
  return g;
}

bool Guest::resume_if_held() {
  if (!attached_ || !held_) return false;
  if (paused_by_us_) {
    (void)resume();
    return true;
  }
  held_ = false;
  unlock_shared_guest();
  return false;
}

Guest::~Guest() {
  // A destructor must not throw (a lock or a join can): the guest is gone either way.
  try {
    shut_down();
  } catch (...) {
  }
}

void Guest::shut_down() {
  if (attached_) {
    // Another process owns QEMU and the run dir: only let go of the guest.
    {
      std::lock_guard lock(g_attached_mu);
      g_attached.erase(this);
    }
    if (paused_by_us_) (void)resume();
    {
      std::lock_guard lock(mu_);
      stop_tail_ = true;
      cv_.notify_all();
    }
    if (reader_.joinable()) reader_.join();
    if (qmp_fd_ >= 0) ::close(qmp_fd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
    std::error_code ec;
    if (!run_dir_.empty() && !std::getenv("NFM_LAB_KEEP")) fs::remove_all(run_dir_, ec);
    return;
  }
  if (pid_ > 0) {
    std::lock_guard lock(reap_mu_);
    if (!exited_) {
      ::kill(pid_, SIGTERM);
      int status;
      auto deadline = Clock::now() + std::chrono::seconds(3);
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      exited_ = true;
    }
  }
  if (serial_fd_ >= 0) ::shutdown(serial_fd_, SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
  if (stream_fd_ >= 0) ::close(stream_fd_);
  if (log_fd_ >= 0) ::close(log_fd_);
  if (serial_fd_ >= 0) ::close(serial_fd_);
  if (qmp_fd_ >= 0) ::close(qmp_fd_);
  std::error_code ec;
  if (!memory_file_.empty()) fs::remove(memory_file_, ec);
  if (!run_dir_.empty() && !std::getenv("NFM_LAB_KEEP")) fs::remove_all(run_dir_, ec);
}

bool Guest::running() const {
  if (attached_) return ::kill(pid_, 0) == 0;
  std::lock_guard lock(reap_mu_);
  if (exited_ || pid_ <= 0) return false;
  int status;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) exited_ = true;
  return !exited_;
}

std::string Guest::kernel_release() const {
  return fs::path(kernel_dir_).filename().string();
}

void Guest::reader_loop() {
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::read(serial_fd_, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mu_);
    const std::string_view chunk(buf.data(), static_cast<size_t>(n));
    if (log_fd_ >= 0) write_all(log_fd_, chunk);
    if (stream_fd_ >= 0) write_all(stream_fd_, chunk);
    consume(buf.data(), static_cast<size_t>(n));
  }
  std::lock_guard lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

Result<void> Guest::share_truth_stream() {
  int fd = ::open(truth_stream().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return sys_error("open " + truth_stream());
  std::lock_guard lock(mu_);
  stream_fd_ = fd;
  return {};
}

void Guest::tail_loop() {
  std::vector<char> buf(1 << 16);
  int fd = ::open(truth_stream().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    // Only what comes after the attach: the first request_truth() brings a whole dump.
    off_t end = ::lseek(fd, 0, SEEK_END);
    std::lock_guard lock(mu_);
    consumed_ = end > 0 ? static_cast<uint64_t>(end) : 0;
  }
  for (;;) {
    ssize_t n = fd >= 0 ? ::read(fd, buf.data(), buf.size()) : -1;
    if (n < 0 && errno == EINTR) continue;
    std::unique_lock lock(mu_);
    if (n > 0) {
      consume(buf.data(), static_cast<size_t>(n));
      continue;
    }
    // At the end of the log: the owner appends as the guest writes. A dead QEMU writes no more.
    if (stop_tail_ || fd < 0 || ::kill(pid_, 0) != 0) break;
    cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stop_tail_; });
  }
  if (fd >= 0) ::close(fd);
  std::lock_guard lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

void Guest::consume(const char* data, size_t n) {
  consumed_ += n;
  line_.append(data, n);
  size_t start = 0, nl;
  while ((nl = line_.find('\n', start)) != std::string::npos) {
    std::string_view line(line_.data() + start, nl - start + 1);  // with its \n
    start = nl + 1;
    if (line.starts_with("==NFM== dump ")) {
      in_dump_ = true;
      dump_text_.clear();
    }
    if (in_dump_) {
      dump_text_.append(line);
      if (line.starts_with("==NFM== ready ")) {
        in_dump_ = false;
        last_dump_ = std::move(dump_text_);
        dump_text_.clear();
        last_seq_ = static_cast<unsigned>(std::strtoul(line.data() + 14, nullptr, 10));
        if (boot_time_.count() == 0)
          boot_time_ =
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
      }
    } else if (line.starts_with("==NFM== begin snapshot")) {
      in_snapshot_ = true;
      snap_.clear();
    } else if (in_snapshot_ && line.starts_with("==NFM== end snapshot")) {
      in_snapshot_ = false;
      snapshot_ = std::move(snap_);
      snap_.clear();
    } else if (in_snapshot_) {
      snap_.append(line);
    }
  }
  line_.erase(0, start);
  cv_.notify_all();
}

std::string Guest::console_tail(size_t bytes) const {
  return "--- console (" + console_log() + ") ---\n" + read_file(console_log(), bytes) +
         "\n--- qemu.log ---\n" + read_file(qemu_dir_ + "/qemu.log", 1000);
}

Result<void> Guest::wait_for_seq(unsigned seq, std::chrono::milliseconds timeout) {
  std::string text;
  {
    std::unique_lock lock(mu_);
    auto deadline = Clock::now() + timeout;
    while (last_seq_ < seq && !eof_) {
      if (cv_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(500))) ==
              std::cv_status::timeout &&
          Clock::now() >= deadline)
        break;
    }
    if (last_seq_ < seq) {
      lock.unlock();
      std::string why = eof_ ? "QEMU closed the serial port (guest died?)" : "timed out";
      return make_error(Errc::io, fmt::format("guest {}: no ground truth dump {} ({})\n{}", name_,
                                              seq, why, console_tail()));
    }
    text = last_dump_;
  }
  auto t = parse_ground_truth(text);
  if (!t) return t.error();
  truth_ = std::make_unique<GroundTruth>(std::move(*t));
  return {};
}

Result<void> Guest::wait_ready(std::chrono::milliseconds timeout) {
  return wait_for_seq(1, timeout);
}

Result<void> Guest::request_truth(std::chrono::milliseconds timeout) {
  // A shared guest: one exchange at a time across processes, never while another process
  // holds it paused. The hold lasts past the answer, until resume() or the end of the
  // test: "request_truth(); pause();" must see no other program's dump in between (a
  // dump changes the reporter's memory, fds and times).
  if (auto r = hold(); !r) return r;
  // A paused guest cannot answer: fail now rather than at the timeout.
  auto paused = is_paused();
  if (!paused) return paused.error();
  if (*paused && attached_ && !paused_by_us_) {
    // Paused with the lock free: a process that paused it died before resuming.
    std::fprintf(stderr, "nfm-lab: shared guest %s was left paused; resuming it\n", name_.c_str());
    if (auto r = qmp_raw({{"execute", "cont"}}); !r) return r.error();
  } else if (*paused) {
    return make_error(Errc::invalid_argument, "guest " + name_ + " is paused: resume() it first");
  }
  if (attached_)
    if (auto r = catch_up_with_log(); !r) return r;
  unsigned want;
  {
    std::lock_guard lock(mu_);
    want = last_seq_ + 1;
  }
  if (auto r = write_serial("dump"); !r) return r;
  return wait_for_seq(want, timeout);
}

Result<void> Guest::hold() {
  if (!attached_ || held_) return {};
  if (auto r = lock_shared_guest(); !r) return r;
  held_ = true;
  return {};
}

Result<void> Guest::lock_shared_guest() {
  if (lock_depth_++ > 0) return {};
  {
    std::lock_guard lock(g_attached_mu);
    for (Guest* other : g_attached)
      if (other != this && other->held_ && !other->paused_by_us_) {
        other->held_ = false;
        other->unlock_shared_guest();
      }
  }
  // Other programs hold it for a truth exchange (seconds) or a pause..resume span.
  const auto deadline = Clock::now() + std::chrono::minutes(10);
  while (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      lock_depth_--;
      return sys_error("flock " + qemu_dir_ + "/lock");
    }
    if (Clock::now() > deadline) {
      lock_depth_--;
      return make_error(Errc::io, "shared guest " + name_ + ": another process held it 10 minutes");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {};
}

void Guest::unlock_shared_guest() {
  if (lock_depth_ > 0 && --lock_depth_ == 0) ::flock(lock_fd_, LOCK_UN);
}

Result<void> Guest::catch_up_with_log() {
  // Under the lock no other dump is under way, so once everything the log holds now is
  // parsed, the next dump is the one this process asks for.
  struct stat st {};
  if (::stat(truth_stream().c_str(), &st) != 0) return sys_error("stat " + truth_stream());
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::seconds(30),
                    [&] { return consumed_ >= static_cast<uint64_t>(st.st_size) || eof_; }))
    return make_error(Errc::io, "shared guest " + name_ + ": the truth log is not being read");
  return {};
}

Result<void> Guest::write_serial(std::string_view line) {
  const std::string text = std::string(line) + "\n";
  if (!attached_) {
    if (!write_all(serial_fd_, text)) return sys_error("write to the guest's serial port");
    return {};
  }
  // The owner holds the serial port; its relay forwards the line.
  int fd = connect_unix(qemu_dir_ + "/cmd.sock");
  if (fd < 0) return sys_error("connect to the guest pool's relay " + qemu_dir_ + "/cmd.sock");
  bool ok = write_all(fd, text);
  ::close(fd);
  if (!ok) return sys_error("write to the guest pool's relay");
  return {};
}

Result<void> Guest::crash(std::chrono::milliseconds timeout) {
  if (attached_)
    return make_error(Errc::unsupported, "guest " + name_ +
                                             " is shared by the guest pool: declare it "
                                             ".exclusive = true to crash it");
  if (!write_all(serial_fd_, "crash\n")) return sys_error("write to the guest's serial port");
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::ifstream console(console_log());
    std::stringstream text;
    text << console.rdbuf();
    if (text.str().find("Kernel panic - not syncing") != std::string::npos) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return make_error(Errc::io, "guest " + name_ + " did not panic\n" + console_tail());
}

Result<void> Guest::send_command(std::string_view command) {
  // Other programs compare nfm with a shared guest's truth at any time: nothing may
  // change it (spawn/kill, files, timewait, perf, crash).
  if (attached_ && command != "ping")
    return make_error(Errc::unsupported, "guest " + name_ + " is shared by the guest pool: '" +
                                             std::string(command) +
                                             "' changes it; declare it .exclusive = true");
  return write_serial(command);
}

std::string Guest::truth_text() const {
  std::lock_guard lock(mu_);
  return last_dump_;
}

std::string Guest::latest_snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

// ---- QMP ------------------------------------------------------------------------------

Result<json> Guest::qmp_read_reply() {
  auto deadline = Clock::now() + std::chrono::minutes(10);
  for (;;) {
    size_t nl;
    while ((nl = qmp_buf_.find('\n')) != std::string::npos) {
      std::string line = qmp_buf_.substr(0, nl);
      qmp_buf_.erase(0, nl + 1);
      if (trim(line).empty()) continue;
      json msg = json::parse(line, nullptr, false);
      if (msg.is_discarded()) return make_error(Errc::bad_format, "QMP sent invalid JSON: " + line);
      if (msg.contains("event")) {
        events_.push_back(std::move(msg));
        continue;
      }
      return msg;
    }
    pollfd p{qmp_fd_, POLLIN, 0};
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return make_error(Errc::io, "QMP reply timed out");
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[8192];
    ssize_t n = ::read(qmp_fd_, buf, sizeof buf);
    if (n <= 0) {
      ::close(qmp_fd_);
      qmp_fd_ = -1;
      return make_error(Errc::io, "QMP connection closed");
    }
    qmp_buf_.append(buf, static_cast<size_t>(n));
  }
}

Result<void> Guest::qmp_connect() {
  if (qmp_fd_ >= 0) return {};
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while ((qmp_fd_ = connect_unix(qmp_socket())) < 0) {
    if (!running() || Clock::now() > deadline) return sys_error("connect to QMP " + qmp_socket());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  qmp_buf_.clear();
  auto greeting = qmp_read_reply();  // {"QMP": {...}}
  if (!greeting) return greeting.error();
  if (!greeting->contains("QMP"))
    return make_error(Errc::bad_format, "unexpected QMP greeting: " + greeting->dump());
  if (!write_all(qmp_fd_, R"({"execute":"qmp_capabilities"})"
                          "\n"))
    return sys_error("QMP write");
  auto reply = qmp_read_reply();
  if (!reply) return reply.error();
  if (reply->contains("error")) return make_error(Errc::io, "qmp_capabilities: " + reply->dump());
  return {};
}

Result<json> Guest::qmp(const json& cmd) {
  if (!attached_) return qmp_raw(cmd);
  const std::string name = cmd.value("execute", "");
  // A shared guest: pausing goes through pause()/resume() (which hold the lock), and
  // nothing may reset, stop or reconfigure it under the other programs.
  static const std::set<std::string> refused = {
      "stop",       "cont",       "system_reset", "system_powerdown", "system_wakeup",
      "quit",       "set-action", "migrate",      "inject-nmi",       "device_add",
      "device_del", "netdev_add", "netdev_del",   "send-key",         "balloon"};
  if (refused.count(name))
    return make_error(Errc::unsupported,
                      "guest " + name_ + " is shared by the guest pool: QMP '" + name +
                          "' is refused (pause()/resume(), or declare it .exclusive = true)");
  if (name == "human-monitor-command") {
    const std::string line = cmd.value("arguments", json::object()).value("command-line", "");
    if (!line.starts_with("info ") && !line.starts_with("x ") && !line.starts_with("xp "))
      return make_error(Errc::unsupported, "guest " + name_ +
                                               " is shared by the guest pool: HMP '" + line +
                                               "' is refused; declare it .exclusive = true");
  }
  // Commands that stop the guest while they run: not during another process's truth
  // exchange (which would see a paused guest).
  const bool pauses = name == "dump-guest-memory" || name == "pmemsave" || name == "memsave";
  if (pauses)
    if (auto r = hold(); !r) return r.error();
  return qmp_raw(cmd);
}

Result<json> Guest::qmp_raw(const json& cmd) {
  std::lock_guard lock(qmp_mu_);
  if (auto r = qmp_connect(); !r) return r.error();
  if (!write_all(qmp_fd_, cmd.dump() + "\n")) return sys_error("QMP write");
  auto reply = qmp_read_reply();
  if (attached_ && qmp_fd_ >= 0) {
    // QEMU serves one QMP client at a time: others wait until this one disconnects.
    ::close(qmp_fd_);
    qmp_fd_ = -1;
  }
  if (!reply) return reply.error();
  if (reply->contains("error")) {
    const json& e = (*reply)["error"];
    return make_error(Errc::io, fmt::format("QMP {}: {}: {}", cmd.value("execute", "?"),
                                            e.value("class", "?"), e.value("desc", "")));
  }
  return reply->value("return", json::object());
}

Result<json> Guest::qmp_execute(const std::string& command, const json& arguments) {
  json cmd = {{"execute", command}};
  if (!arguments.is_null()) cmd["arguments"] = arguments;
  return qmp(cmd);
}

std::vector<json> Guest::qmp_events() {
  std::lock_guard lock(qmp_mu_);
  return std::exchange(events_, {});
}

Result<std::string> Guest::hmp(const std::string& command_line) {
  auto r = qmp_execute("human-monitor-command", {{"command-line", command_line}});
  if (!r) return r.error();
  return r->is_string() ? r->get<std::string>() : std::string();
}

Result<void> Guest::pause() {
  // Held until resume(): other processes wait to ask for truth or to pause it.
  if (auto r = hold(); !r) return r;
  if (auto r = qmp_raw({{"execute", "stop"}}); !r) return r.error();
  paused_by_us_ = attached_;
  return {};
}

Result<void> Guest::resume() {
  auto r = qmp_raw({{"execute", "cont"}});
  paused_by_us_ = false;
  if (attached_ && held_) {
    held_ = false;
    unlock_shared_guest();
  }
  if (!r) return r.error();
  return {};
}

Result<bool> Guest::is_paused() {
  auto r = qmp_raw({{"execute", "query-status"}});
  if (!r) return r.error();
  return !r->value("running", false);
}

Result<void> Guest::dump_elf(const std::string& path) {
  auto r = qmp_execute("dump-guest-memory",
                       {{"paging", false}, {"protocol", "file:" + fs::absolute(path).string()}});
  if (!r) return r.error();
  return {};
}

Result<std::vector<Guest::RamRange>> Guest::ram_ranges() {
  // "  0000000100000000-000000013fffffff (prio 0, ram): alias ram-above-4g @pc.ram
  // 00000000c0000000-00000000ffffffff"
  auto text = hmp("info mtree");
  if (!text) return text.error();
  static const std::regex re(
      R"(([0-9a-f]+)-([0-9a-f]+) \(prio [-0-9]+, ram\): alias ram-(below|above)-4g @\S+ ([0-9a-f]+)-)");
  std::vector<RamRange> out;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, re)) continue;
    RamRange r{std::stoull(m[1], nullptr, 16),
               std::stoull(m[2], nullptr, 16) - std::stoull(m[1], nullptr, 16) + 1,
               std::stoull(m[4], nullptr, 16)};
    bool seen = false;
    for (auto& o : out) seen |= o.gpa == r.gpa;
    if (!seen) out.push_back(r);  // the same alias shows in several address spaces
  }
  if (out.empty()) return make_error(Errc::not_found, "no ram-below-4g alias in 'info mtree'");
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.gpa < b.gpa; });
  return out;
}

Result<void> Guest::pmemsave(const std::string& path_in) {
  const std::string path = fs::absolute(path_in).string();
  auto ranges = ram_ranges();
  if (!ranges) return ranges.error();
  if (ranges->front().gpa != 0)
    return make_error(Errc::unsupported, "guest RAM does not start at GPA 0");
  auto paused = is_paused();
  if (!paused) return paused.error();
  if (!*paused)
    if (auto r = pause(); !r) return r;
  // QEMU writes each range to a file of its own (pmemsave truncates): the one at GPA 0
  // straight to `path`, the others to a side file copied into place at offset == GPA.
  Result<void> result;
  for (const auto& range : *ranges) {
    const std::string target = range.gpa == 0 ? path : path + ".part";
    if (auto r = qmp_execute("pmemsave",
                             {{"val", range.gpa}, {"size", range.size}, {"filename", target}});
        !r) {
      result = r.error();
      break;
    }
    if (range.gpa == 0) continue;
    int in = ::open(target.c_str(), O_RDONLY | O_CLOEXEC);
    int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    loff_t in_off = 0, out_off = static_cast<loff_t>(range.gpa);
    uint64_t left = range.size;
    if (in < 0 || out < 0) result = sys_error("open " + target);
    while (result && left > 0) {
      ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, left, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        result = sys_error("copy_file_range");
      else
        left -= static_cast<uint64_t>(n);
    }
    if (in >= 0) ::close(in);
    if (out >= 0) ::close(out);
    ::unlink(target.c_str());
    if (!result) break;
  }
  if (!*paused)
    if (auto r = resume(); !r && result) result = r;
  return result;
}

Result<void> Guest::migrate_to_file(const std::string& path_in) {
  const std::string path = fs::absolute(path_in).string();
  if (path.find('\'') != std::string::npos)
    return make_error(Errc::invalid_argument, "path holds a quote: " + path);
  // The guest ends paused: a shared one stays this process's until resume().
  if (auto r = hold(); !r) return r;
  if (auto r =
          qmp_raw({{"execute", "migrate"}, {"arguments", {{"uri", "exec:cat > '" + path + "'"}}}});
      !r)
    return r.error();
  paused_by_us_ = attached_;
  auto deadline = Clock::now() + std::chrono::minutes(10);
  for (;;) {
    auto st = qmp_execute("query-migrate");
    if (!st) return st.error();
    std::string status = st->value("status", "");
    if (status == "completed") return {};
    if (status == "failed" || status == "cancelled")
      return make_error(Errc::io, "migration " + status + ": " + st->value("error-desc", ""));
    if (Clock::now() > deadline) return make_error(Errc::io, "migration timed out");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string with_quiet_workload(std::string append) {
  for (const char* dflt : {"nfm.burn=0", "nfm.snapshot=0"}) {
    const std::string_view key(dflt, std::strchr(dflt, '=') + 1 - dflt);
    if (append.find(key) == std::string::npos)
      append += (append.empty() ? "" : " ") + std::string(dflt);
  }
  return append;
}

}  // namespace nfm::lab
