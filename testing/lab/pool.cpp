#include "pool.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace nfm::lab::pool {
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Written whole, then renamed: readers never see half a file.
bool publish(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return false;
  }
  return ::rename(tmp.c_str(), path.c_str()) == 0;
}

pid_t read_pid(const std::string& path) {
  return static_cast<pid_t>(std::strtol(slurp(path).c_str(), nullptr, 10));
}

bool alive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

int listen_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    ::close(fd);
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(fd, 64) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One client of the relay: its lines, up to EOF (it writes a line and closes).
std::vector<std::string> read_lines(int fd) {
  std::string text;
  char buf[256];
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (text.size() < 4096 && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

const std::vector<std::string>& kernels() {
  static const std::vector<std::string> k = {"5.10", "6.1", "6.1-cloud", "6.12"};
  return k;
}

GuestOptions options(const std::string& kernel) {
  // What most test programs declare: {.kernel = K, .ram_mib = 384}, plus the fixture's
  // quiet workload.
  return GuestOptions{.kernel = kernel, .ram_mib = 384, .append = with_quiet_workload("")};
}

bool matches(const GuestOptions& d) {
  if (d.exclusive) return false;
  bool known = false;
  for (const auto& k : kernels()) known |= d.kernel == k;
  if (!known) return false;
  const GuestOptions p = options(d.kernel);
  return d.ram_mib == p.ram_mib && d.cpus == p.cpus && d.machine == p.machine && d.nic == p.nic &&
         d.backing == p.backing && d.cpu_model == p.cpu_model && d.append == p.append &&
         d.qemu_args == p.qemu_args && d.user_net == p.user_net &&
         d.extra_files == p.extra_files;
}

std::string directory() {
  const char* d = std::getenv("NFM_LAB_POOL");
  return d && *d ? d : "";
}

bool running() {
  const std::string dir = directory();
  return !dir.empty() && alive(read_pid(dir + "/pool.pid"));
}

Result<std::unique_ptr<Guest>> attach(const std::string& dir, const std::string& kernel,
                                      std::chrono::seconds timeout) {
  const std::string entry = dir + "/" + kernel + ".json", failed = dir + "/" + kernel + ".error";
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (fs::exists(failed))
      return make_error(Errc::io, "pooled guest " + kernel + " did not boot: " + slurp(failed));
    if (fs::exists(entry)) break;
    if (!alive(read_pid(dir + "/pool.pid")))
      return make_error(Errc::io, "the guest pool in " + dir + " is not running (see pool.log)");
    if (Clock::now() > deadline)
      return make_error(Errc::io, "pooled guest " + kernel + " not ready after " +
                                      std::to_string(timeout.count()) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  json j = json::parse(slurp(entry), nullptr, false);
  if (j.is_discarded()) return make_error(Errc::bad_format, "bad pool entry " + entry);
  SharedGuestInfo info;
  info.name = j.value("name", "");
  info.pid = j.value("pid", -1);
  info.run_dir = j.value("run_dir", "");
  info.kernel_dir = j.value("kernel_dir", "");
  info.boot_time = std::chrono::milliseconds(j.value("boot_ms", 0));
  info.options = options(kernel);
  info.options.name = info.name;
  return Guest::attach(info);
}

int start(const std::string& dir, const std::string& self_exe) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  // A pool left by an interrupted run: stop it, forget its guests.
  if (pid_t old = read_pid(dir + "/pool.pid"); alive(old)) stop(dir);
  for (const auto& e : fs::directory_iterator(dir, ec)) fs::remove(e.path(), ec);
  // Whoever starts the pool (ctest) outlives every user of it: the pool ends with it,
  // even if the cleanup test never runs.
  const std::string watch = std::to_string(::getppid());
  const std::string log = dir + "/pool.log";
  pid_t pid = ::fork();
  if (pid < 0) return std::perror("fork"), 1;
  if (pid == 0) {
    // Detached, and off ctest's output pipe, which ctest reads until EOF.
    ::setsid();
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(in, 0), ::dup2(out, 1), ::dup2(out, 2);
    ::close_range(3, ~0u, 0);
    ::execl(self_exe.c_str(), self_exe.c_str(), "pool", "serve", dir.c_str(), "--watch",
            watch.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  publish(dir + "/pool.pid", std::to_string(pid) + "\n");
  std::printf("nfm-lab pool: pid %d, %zu guests booting in %s\n", pid, kernels().size(),
              dir.c_str());
  return 0;
}

int stop(const std::string& dir) {
  pid_t pid = read_pid(dir + "/pool.pid");
  if (alive(pid)) {
    ::kill(pid, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (alive(pid) && Clock::now() < deadline) {
      ::waitpid(pid, nullptr, WNOHANG);  // our child when start and stop are one process
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (alive(pid)) ::kill(pid, SIGKILL);
  }
  // The pool's own account (boot times, CPU time of its guests) for the CI log.
  std::fputs(slurp(dir + "/pool.log").c_str(), stdout);
  std::error_code ec;
  fs::remove(dir + "/pool.pid", ec);
  return 0;
}

int serve(const std::string& dir, pid_t watch) {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  const auto t0 = Clock::now();
  auto since = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  struct Pooled {
    std::string kernel;
    std::unique_ptr<Guest> guest;
    int listen_fd = -1;
    std::thread ready;
  };
  std::vector<Pooled> pooled(kernels().size());
  std::vector<std::future<Result<std::unique_ptr<Guest>>>> prepared;
  for (size_t i = 0; i < pooled.size(); i++) {
    pooled[i].kernel = kernels()[i];
    GuestOptions o = options(kernels()[i]);
    o.name = "nfm-pool-" + o.kernel + "-" + std::to_string(::getpid());
    prepared.push_back(std::async(std::launch::async, [o] { return Guest::prepare(o); }));
  }
  auto fail = [&](Pooled& p, const std::string& why) {
    std::fprintf(stderr, "nfm-lab pool: %s: %s\n", p.kernel.c_str(), why.c_str());
    publish(dir + "/" + p.kernel + ".error", why + "\n");
  };
  // QEMU forks from this (main) thread: PR_SET_PDEATHSIG follows the forking thread.
  for (size_t i = 0; i < pooled.size(); i++) {
    auto& p = pooled[i];
    auto g = prepared[i].get();
    if (g)
      if (auto ok = (*g)->launch(); !ok) g = ok.error();
    if (!g) {
      fail(p, g.error().to_string());
      continue;
    }
    p.guest = std::move(*g);
    if (auto ok = p.guest->share_truth_stream(); !ok) fail(p, ok.error().to_string());
    p.listen_fd = listen_unix(p.guest->run_dir() + "/cmd.sock");
    p.ready = std::thread([&p, &dir, &since, &fail] {
      if (auto r = p.guest->wait_ready(p.guest->options().timeout); !r) {
        fail(p, r.error().to_string());
        return;
      }
      json j = {{"kernel", p.kernel},
                {"name", p.guest->name()},
                {"pid", p.guest->pid()},
                {"run_dir", p.guest->run_dir()},
                {"kernel_dir", p.guest->kernel_dir()},
                {"boot_ms", p.guest->boot_time().count()}};
      publish(dir + "/" + p.kernel + ".json", j.dump(2) + "\n");
      std::fprintf(stderr, "nfm-lab pool: %s (%s, QEMU pid %d) ready in %.1f s (pool at %.1f s)\n",
                   p.kernel.c_str(), p.guest->kernel_release().c_str(), p.guest->pid(),
                   p.guest->boot_time().count() / 1000.0, since());
    });
  }
  // The relay: truth requests from attached programs (each holds the guest's lock).
  const auto lifetime = std::chrono::hours(3);
  while (!g_stop && alive(watch) && Clock::now() - t0 < lifetime) {
    std::vector<pollfd> fds;
    std::vector<Pooled*> owners;
    for (auto& p : pooled)
      if (p.listen_fd >= 0) {
        fds.push_back({p.listen_fd, POLLIN, 0});
        owners.push_back(&p);
      }
    int n = ::poll(fds.data(), fds.size(), 500);
    if (n <= 0) continue;
    for (size_t i = 0; i < fds.size(); i++) {
      if (!(fds[i].revents & POLLIN)) continue;
      int c = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      for (const auto& line : read_lines(c))
        if (line == "dump" || line == "ping")  // never anything that changes the guest
          (void)owners[i]->guest->send_command(line);
      ::close(c);
    }
  }
  std::fprintf(stderr, "nfm-lab pool: stopping at %.1f s (%s)\n", since(),
               g_stop         ? "asked to"
               : alive(watch) ? "lifetime over"
                              : "its starter exited");
  // Kill QEMU first so that boot waits still under way return, then let the guests go.
  for (auto& p : pooled)
    if (p.guest) ::kill(p.guest->pid(), SIGKILL);
  for (auto& p : pooled) {
    if (p.ready.joinable()) p.ready.join();
    if (p.listen_fd >= 0) ::close(p.listen_fd);
    p.guest.reset();
  }
  // What the pool's guests cost, for comparing with guests booted per program.
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  std::fprintf(
      stderr, "nfm-lab pool: guests used %.1f s CPU (user %.1f, system %.1f)\n",
      ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
      ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
      ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
  for (const auto& k : kernels()) fs::remove(fmt::format("{}/{}.json", dir, k));
  return 0;
}

}  // namespace nfm::lab::pool
