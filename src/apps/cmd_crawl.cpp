// nfm crawl: the daemon. Watches the host's VMs (or the given targets), crawls each at
// an interval and sends every frame to the --emit sinks. A live table on a terminal,
// logfmt event lines on stderr otherwise; SIGINT/SIGTERM stop, flush and exit 0.
#include <fmt/chrono.h>
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/guest_crawl.h"
#include "crawler/crawler.h"
#include "host/qemu/cmdline.h"
#include "store/frame_sink.h"
#include "store/sqlite_store.h"

namespace nfm::app {

namespace {

struct CrawlArgs {
  std::vector<std::string> targets;
  std::vector<std::string> emit;
  uint64_t buffer_frames = 1000;
  std::vector<std::string> match;
  std::string interval = "1s";
  std::string features = "all";
  unsigned threads = 0;
  std::string retain;
  uint64_t count = 0;
  std::string duration;
  std::string rotate_size = "64M";
  int rotate_keep = 4;
  bool no_libvirt = false;
  bool no_profile_cache = false;
  std::string access = "auto";
  std::string log = "auto";
  BudgetArgs budget;
};

// "3 partial frames (12 items lost: open_files 2, processes 10), 1 failed crawl":
// what went wrong inside frames as well as whole crawls that failed.
std::string error_summary(const CrawlerStats& s) {
  uint64_t partial = 0, failed = 0, lost = 0;
  std::map<std::string, uint64_t> by_feature;
  for (const auto& v : s.vms) {
    partial += v.partial;
    failed += v.errors;
    for (const auto& [feature, n] : v.feature_errors) {
      by_feature[feature] += n;
      lost += n;
    }
  }
  std::string features;
  for (const auto& [feature, n] : by_feature)
    if (n) features += fmt::format("{}{} {}", features.empty() ? "" : ", ", feature, n);
  return fmt::format("{} partial frames{}, {} failed crawls", partial,
                     lost ? fmt::format(" ({} items lost: {})", lost, features) : "", failed);
}

// logfmt value: quoted when it needs to be.
std::string logfmt_value(const std::string& v) {
  bool plain = !v.empty();
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20)
      plain = false;
  if (plain) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string now_iso() {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", tm, ms);
}

const char* event_level(CrawlerEvent::Kind kind) {
  using K = CrawlerEvent::Kind;
  switch (kind) {
    case K::attach_failed:
    case K::kernel_lost:
    case K::lost:
    case K::frozen:
      return "warn";
    case K::sink_error:
      return "error";
    default:
      return "info";
  }
}

std::string human_duration(uint64_t ns) {
  if (ns >= 1'000'000'000) return fmt::format("{:.2f}s", ns / 1e9);
  if (ns >= 1'000'000) return fmt::format("{:.1f}ms", ns / 1e6);
  return fmt::format("{}us", ns / 1000);
}

// The terminal view: a table redrawn in place, with events scrolling above it.
class Terminal {
 public:
  void event(const CrawlerEvent& e) {
    std::lock_guard lock(mu_);
    clear();
    fmt::print(stderr, "{} {}{}{}\n", now_iso().substr(11, 12), event_kind_name(e.kind),
               e.vm.name.empty() ? "" : " " + e.vm.name, e.message.empty() ? "" : ": " + e.message);
    draw_locked();
  }
  void update(const CrawlerStats& s, double rate) {
    std::lock_guard lock(mu_);
    clear();
    lines_.clear();
    size_t attached = 0;
    for (const auto& v : s.vms) attached += v.state == VmState::attached;
    lines_.push_back(fmt::format(
        "nfm crawl: {} VMs ({} attached), {} frames, {:.1f} frames/s, {}, RSS {} MiB, {} threads",
        s.vms.size(), attached, s.frames, rate, error_summary(s), s.rss_bytes >> 20, s.threads));
    for (const auto& k : s.sinks)
      lines_.push_back(fmt::format(
          "  sink {}: {} written, {} buffered, {} dropped, {} errors{}", k.sink,
          k.stats.frames_written, k.stats.frames_buffered, k.stats.frames_dropped,
          k.stats.write_errors, k.stats.last_error.empty() ? "" : " (" + k.stats.last_error + ")"));
    lines_.push_back(fmt::format("  {:<24} {:>8} {:<10} {:>8} {:>7} {:>6} {:>9}  {}", "VM",
                                 "PID", "STATE", "CRAWLS", "PARTIAL", "FAILED", "LAST",
                                 "KERNEL / REASON"));
    size_t shown = 0;
    for (const auto& v : s.vms) {
      if (++shown > 30) {
        lines_.push_back(fmt::format("  ... and {} more", s.vms.size() - 30));
        break;
      }
      std::string state = vm_state_name(v.state);
      if (v.frozen) state += "*";
      lines_.push_back(fmt::format("  {:<24} {:>8} {:<10} {:>8} {:>7} {:>6} {:>9}  {}",
                                   v.vm.name.substr(0, 24), v.vm.pid, state, v.crawls, v.partial,
                                   v.errors,
                                   v.last_duration_ns ? human_duration(v.last_duration_ns) : "-",
                                   v.reason.empty() ? v.kernel : v.reason));
    }
    draw_locked();
  }
  void finish() {
    std::lock_guard lock(mu_);
    drawn_ = 0;  // leave the last table on screen
  }

 private:
  void clear() {
    if (drawn_) fmt::print(stderr, "\x1b[{}A\x1b[J", drawn_);
    drawn_ = 0;
  }
  void draw_locked() {
    for (const auto& l : lines_) fmt::print(stderr, "{}\n", l);
    drawn_ = lines_.size();
    std::fflush(stderr);
  }
  std::mutex mu_;
  std::vector<std::string> lines_;
  size_t drawn_ = 0;
};

void log_event(const CrawlerEvent& e, const char* name = nullptr) {
  std::string line = fmt::format("time={} level={} event={}", now_iso(), event_level(e.kind),
                                 name ? name : event_kind_name(e.kind));
  if (!e.vm.name.empty()) line += " vm=" + logfmt_value(e.vm.name);
  if (e.vm.pid) line += fmt::format(" pid={}", e.vm.pid);
  if (!e.vm.uuid.empty()) line += " uuid=" + e.vm.uuid;
  if (!e.target.empty() && e.vm.pid == 0) line += " target=" + logfmt_value(e.target);
  if (!e.message.empty()) line += " msg=" + logfmt_value(e.message);
  fmt::print(stderr, "{}\n", line);
  std::fflush(stderr);
}

int run_crawl(const CrawlArgs& a) {
  CrawlerOptions options;
  options.targets = a.targets;
  options.discovery.match = a.match;
  options.discovery.libvirt = !a.no_libvirt;
  auto interval = parse_duration(a.interval);
  if (!interval) return report_error("--interval: " + interval.error().message);
  if (*interval < std::chrono::milliseconds(1)) return report_error("--interval: at least 1ms");
  options.interval = *interval;
  auto features = parse_feature_list(a.features);
  if (!features) return report_error(features.error().to_string());
  options.frame.features = *features;
  options.frame.budget = crawl_budget(a.budget);
  options.threads = a.threads;
  options.count = a.count;
  options.profile.use_cache = !a.no_profile_cache;
  if (a.access == "vm_readv") options.target.access = QemuAccess::vm_readv;
  if (a.access == "proc_mem") options.target.access = QemuAccess::proc_mem;

  std::chrono::nanoseconds duration{0};
  if (!a.duration.empty()) {
    auto d = parse_duration(a.duration);
    if (!d) return report_error("--duration: " + d.error().message);
    duration = *d;
  }
  SinkOptions sink_options;
  if (!a.retain.empty()) {
    auto r = parse_duration(a.retain);
    if (!r) return report_error("--retain: " + r.error().message);
    sink_options.retain_ns = static_cast<uint64_t>(r->count());
  }
  auto rotate = parse_qemu_size(a.rotate_size, 0);
  if (!rotate) return report_error("--rotate-size: " + rotate.error().message);
  sink_options.rotate_bytes = *rotate;
  sink_options.rotate_keep = a.rotate_keep;

  sink_options.buffer_frames = a.buffer_frames;
  std::vector<std::string> specs = a.emit;
  if (specs.empty()) {
    // The embedded default: a SQLite frame store the other commands read (--store).
    auto path = default_sqlite_path();
    if (!path) return report_error("no --emit given and no default store: " + path.error().message);
    specs.push_back("sqlite:" + *path);
  }
  std::vector<std::unique_ptr<FrameSink>> sinks;
  std::vector<FrameSink*> borrowed;
  for (const auto& spec : specs) {
    auto sink = open_sink(spec, sink_options);
    if (!sink) return report_error(sink.error().message);
    borrowed.push_back(sink->get());
    sinks.push_back(std::move(sink).value());
  }

  // Signals are taken synchronously by this thread (sigtimedwait); every other thread
  // inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  bool tty = isatty(STDERR_FILENO);
  if (a.log == "logfmt") tty = false;
  Terminal terminal;
  Crawler crawler(options, borrowed, [&](const CrawlerEvent& e) {
    if (tty)
      terminal.event(e);
    else
      log_event(e);
  });
  std::atomic<bool> finished = false;
  std::thread runner([&] {
    crawler.run();
    finished = true;
  });
  const auto started = std::chrono::steady_clock::now();
  uint64_t last_frames = 0;
  auto last_time = started;
  std::string stop_reason = "done";
  while (!finished) {
    timespec tick{0, 250'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      stop_reason = sig == SIGINT ? "SIGINT" : "SIGTERM";
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (duration.count() && now - started >= duration) {
      stop_reason = "duration";
      break;
    }
    if (tty && now - last_time >= std::chrono::seconds(1)) {
      const CrawlerStats s = crawler.stats();
      const double secs = std::chrono::duration<double>(now - last_time).count();
      terminal.update(s, (s.frames - last_frames) / secs);
      last_frames = s.frames;
      last_time = now;
    }
  }
  crawler.stop();
  runner.join();
  for (auto& s : sinks) s->flush();
  const CrawlerStats s = crawler.stats();
  if (tty) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    terminal.update(s, secs > 0 ? s.frames / secs : 0);
    terminal.finish();
  }
  if (!tty) {
    CrawlerEvent stopped{.kind = CrawlerEvent::Kind::done};
    stopped.message = fmt::format("crawl stopped ({}): {} VMs, {} frames, {}, RSS {} MiB",
                                  stop_reason, s.vms.size(), s.frames, error_summary(s),
                                  s.rss_bytes >> 20);
    log_event(stopped, "crawl_stopped");
  }
  // Explicit targets that gave nothing at all: the command failed.
  if (!a.targets.empty() && s.frames == 0) {
    for (const auto& v : s.vms)
      if (!v.reason.empty()) report_error(v.target + ": " + v.reason);
    return 1;
  }
  return 0;
}

}  // namespace

void register_crawl(CLI::App& app) {
  auto args = std::make_shared<CrawlArgs>();
  CLI::App* cmd = app.add_subcommand(
      "crawl",
      "Monitor VMs continuously: crawl every QEMU/KVM guest on this host (or the given "
      "targets) at an interval and emit frames");
  cmd->footer(
      "Without TARGETs, nfm crawl discovers the host's QEMU processes by itself (every few\n"
      "seconds: new VMs are attached, exited ones dropped; names and UUIDs from -name/-uuid\n"
      "or libvirt). A guest that reboots is re-attached to its new kernel; a hung or\n"
      "panicked guest keeps being crawled from its memory. Memory images give one frame each.\n\n"
      "Sinks (--emit, repeatable; default sqlite: at $NFM_STORE_PATH, else\n"
      "/var/lib/nfm/frames.db for root, else ~/.local/state/nfm/frames.db):\n"
      "  sqlite:PATH     a frame store: one table per feature + frames, WAL, --retain;\n"
      "                  read by nfm top/shell --store and plain sqlite3 (docs/stores.md)\n"
      "  clickhouse:http://HOST:8123/DB   batched inserts; buffered while the server is down\n"
      "  prometheus:[ADDR:]PORT           a /metrics endpoint (127.0.0.1 unless ADDR given)\n"
      "  stdout          JSON Lines, one frame per line (docs/frame-schema.md)\n"
      "  file:PATH       JSON Lines appended to PATH, rotated by size to PATH.1..N\n\n"
      "On a terminal a live table shows each VM (state, crawls, errors, last crawl time);\n"
      "otherwise events (vm_found, vm_attached, vm_reattached, vm_lost, sink_error, ...)\n"
      "are logged as logfmt lines on stderr. SIGINT/SIGTERM stop, flush the sinks, exit 0.\n\n"
      "Examples:\n"
      "  nfm crawl --emit file:/var/log/nfm/frames.jsonl\n"
      "  nfm crawl --match 'web-*' --interval 100ms --features ps,netstat --emit stdout\n"
      "  nfm crawl --count 3 qemu:guest1 /tmp/guest.dump");
  cmd->add_option("TARGET", args->targets,
                  "explicit targets (qemu:PID, qemu:NAME, memory images) instead of discovery");
  // One value per occurrence: "--emit file:x qemu:1" leaves qemu:1 a TARGET.
  cmd->add_option("--emit,-e", args->emit,
                  "where frames go (repeatable): sqlite:PATH, clickhouse:URL, "
                  "prometheus:[ADDR:]PORT, stdout, file:PATH")
      ->allow_extra_args(false);
  cmd->add_option("--match,-m", args->match,
                  "only VMs whose name matches this glob (repeatable; discovery)")
      ->allow_extra_args(false);
  cmd->add_option("--interval,-i", args->interval, "time between crawls of a VM (1s, 100ms, 1ms)")
      ->capture_default_str();
  cmd->add_option("--features,-f", args->features,
                  "comma-separated features (ps, lsmod, dmesg, ifconfig, lsof, maps, netstat, "
                  "uname, uptime, cpuinfo, meminfo) or all")
      ->capture_default_str();
  cmd->add_option("--threads,-j", args->threads, "crawler threads (default: one per core)");
  add_budget_options(*cmd, args->budget);
  cmd->add_option("--count,-n", args->count, "crawl each VM N times, then exit");
  cmd->add_option("--duration", args->duration, "stop after this long (e.g. 30s, 10m)");
  cmd->add_option("--retain", args->retain, "sqlite: delete frames older than this (e.g. 1h)");
  cmd->add_option("--buffer-frames", args->buffer_frames,
                  "frames a store holds while its server is down (then the oldest are dropped)")
      ->capture_default_str();
  cmd->add_option("--rotate-size", args->rotate_size, "file: rotate at this size (0: never)")
      ->capture_default_str();
  cmd->add_option("--rotate-keep", args->rotate_keep, "file: rotated files kept")
      ->capture_default_str();
  cmd->add_flag("--no-libvirt", args->no_libvirt, "do not ask libvirt for domain names");
  cmd->add_flag("--no-profile-cache", args->no_profile_cache,
                "neither use nor write the compiled-profile cache");
  cmd->add_option("--access", args->access, "live QEMU reads: auto, vm_readv or proc_mem")
      ->check(CLI::IsMember({"auto", "vm_readv", "proc_mem"}));
  cmd->add_option("--log", args->log, "stderr: auto (table on a terminal, else logfmt) or logfmt")
      ->check(CLI::IsMember({"auto", "logfmt"}));
  cmd->callback([args] {
    const int status = run_crawl(*args);
    if (status != 0) throw CLI::RuntimeError(status);
  });
}

}  // namespace nfm::app
