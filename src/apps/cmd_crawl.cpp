// nfm crawl: the daemon. Watches the host's VMs (or the given targets), crawls each at
// an interval and sends every frame to the --emit sinks. A live table on a terminal,
// journal entries under systemd, logfmt event lines on stderr otherwise. SIGINT/SIGTERM
// stop, flush and exit 0; SIGHUP reads the configuration again (--config and the
// command line) and carries on with it, every frame crawled before it delivered.
#include <fmt/chrono.h>
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/config_file.h"
#include "apps/guest_crawl.h"
#include "crawler/crawler.h"
#include "features/scan/memory_scan.h"
#include "host/qemu/cmdline.h"
#include "store/frame_sink.h"
#include "store/sqlite_store.h"
#include "util/cache_dir.h"
#include "util/systemd.h"

namespace nfm::app {

namespace {

// How long a stopping daemon waits for its sinks (the crawl's own stop comes first).
constexpr std::chrono::milliseconds kStopFlushBudget{1500};

struct CrawlArgs {
  std::vector<std::string> targets;
  std::vector<std::string> emit;
  uint64_t buffer_frames = 1000;
  std::vector<std::string> match;
  std::string interval = "1s";
  std::string features = "all";
  unsigned threads = 0;
  std::string retain = "15d";
  std::string max_store_size = "2G";
  uint64_t count = 0;
  std::string duration;
  std::string rotate_size = "64M";
  int rotate_keep = 4;
  bool no_libvirt = false;
  bool no_profile_cache = false;
  std::string access = "auto";
  std::string log = "auto";
  BudgetArgs budget;
  std::string config;  // --config FILE
  bool print_config = false;
  std::string scan_rules;  // the scan feature's YARA rules
  std::string scan_rate = "64M";
  bool scan_kernel_memory = false;
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
      lines_.push_back(
          fmt::format("  sink {}: {} written, {} buffered, {} dropped, {} expired, {} errors{}",
                      k.sink, k.stats.frames_written, k.stats.frames_buffered,
                      k.stats.frames_dropped, k.stats.frames_expired, k.stats.write_errors,
                      k.stats.last_error.empty() ? "" : " (" + k.stats.last_error + ")"));
    lines_.push_back(fmt::format("  {:<24} {:>8} {:<10} {:>8} {:>7} {:>6} {:>9}  {}", "VM", "PID",
                                 "STATE", "CRAWLS", "PARTIAL", "FAILED", "LAST",
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

enum class LogMode { table, logfmt, journal };

LogMode log_mode(const std::string& option) {
  if (option == "logfmt") return LogMode::logfmt;
  if (option == "journal") return LogMode::journal;
  if (isatty(STDERR_FILENO)) return LogMode::table;
  return systemd::stderr_is_journal() ? LogMode::journal : LogMode::logfmt;
}

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

// One journal entry per event, its VM and kind as fields (journalctl VM=web-1 EVENT=vm_lost);
// logfmt on stderr when no journal takes it.
void journal_event(const CrawlerEvent& e, const char* name = nullptr) {
  const std::string event = name ? name : event_kind_name(e.kind);
  const std::string level = event_level(e.kind);
  const int priority = level == "error"  ? systemd::kPriorityError
                       : level == "warn" ? systemd::kPriorityWarning
                                         : systemd::kPriorityInfo;
  std::string message = event;
  if (!e.vm.name.empty()) message += " " + e.vm.name;
  if (!e.message.empty()) message += ": " + e.message;
  const bool sent = systemd::journal_send(priority, message,
                                          {{"EVENT", event},
                                           {"VM", e.vm.name},
                                           {"VM_PID", e.vm.pid ? std::to_string(e.vm.pid) : ""},
                                           {"VM_UUID", e.vm.uuid},
                                           {"TARGET", e.vm.pid == 0 ? e.target : ""}});
  if (!sent) log_event(e, name);
}

// What the options ask for, checked: everything a crawl needs before it starts.
struct CrawlPlan {
  CrawlerOptions options;
  SinkOptions sink_options;
  std::vector<std::string> sinks;  // --emit specs; the default store when none
  std::chrono::nanoseconds duration{0};
  LogMode log = LogMode::logfmt;
};

Result<CrawlPlan> plan_crawl(const CrawlArgs& a) {
  const auto invalid = [](const std::string& message) {
    return make_error(Errc::invalid_argument, message);
  };
  CrawlPlan plan;
  CrawlerOptions& options = plan.options;
  options.targets = a.targets;
  options.discovery.match = a.match;
  options.discovery.libvirt = !a.no_libvirt;
  auto interval = parse_duration(a.interval);
  if (!interval) return invalid("--interval: " + interval.error().message);
  if (*interval < std::chrono::milliseconds(1)) return invalid("--interval: at least 1ms");
  options.interval = *interval;
  auto features = parse_feature_list(a.features);
  if (!features) return invalid(features.error().to_string());
  options.frame.features = *features;
  const Feature scan = Feature::named(ScanResult::kFeature);
  const bool scanning = std::find(features->begin(), features->end(), scan) != features->end();
  if (scanning && a.scan_rules.empty())
    return invalid("--features scan needs --scan-rules FILE|DIR (the YARA rules to scan with)");
  if (!a.scan_rules.empty()) {
    // Compiled (or taken from the cache) here: bad rules stop the daemon at start, and
    // a reload (SIGHUP) compiles them again.
    auto rules = YaraRules::load(a.scan_rules, cache_dir("yara"));
    if (!rules) return invalid("--scan-rules " + a.scan_rules + ": " + rules.error().message);
    auto rate = parse_qemu_size(a.scan_rate, 0);
    if (!rate) return invalid("--scan-rate: " + rate.error().message);
    if (*rate < 4096) return invalid("--scan-rate: at least 4K (one page per crawl)");
    if (!scanning) options.frame.features.push_back(scan);
    std::sort(options.frame.features.begin(), options.frame.features.end());
    ScanOptions scan_options;
    scan_options.rules = *rules;
    scan_options.kernel = a.scan_kernel_memory;
    scan_options.max_bytes = *rate;
    options.frame.feature_options.emplace(ScanResult::kFeature, std::move(scan_options));
  }
  auto budget = parse_crawl_budget(a.budget);
  if (!budget) return budget.error();
  options.frame.budget = *budget;
  options.threads = a.threads;
  options.count = a.count;
  options.profile.use_cache = !a.no_profile_cache;
  if (a.access == "vm_readv") options.target.access = QemuAccess::vm_readv;
  if (a.access == "proc_mem") options.target.access = QemuAccess::proc_mem;

  if (!a.duration.empty()) {
    auto d = parse_duration(a.duration);
    if (!d) return invalid("--duration: " + d.error().message);
    plan.duration = *d;
  }
  if (!a.retain.empty()) {
    auto r = parse_duration(a.retain);
    if (!r) return invalid("--retain: " + r.error().message);
    plan.sink_options.retain_ns = static_cast<uint64_t>(r->count());
  }
  auto max_store = parse_qemu_size(a.max_store_size, 0);
  if (!max_store) return invalid("--max-store-size: " + max_store.error().message);
  plan.sink_options.max_store_bytes = *max_store;
  auto rotate = parse_qemu_size(a.rotate_size, 0);
  if (!rotate) return invalid("--rotate-size: " + rotate.error().message);
  plan.sink_options.rotate_bytes = *rotate;
  plan.sink_options.rotate_keep = a.rotate_keep;
  plan.sink_options.buffer_frames = a.buffer_frames;
  plan.sinks = a.emit;
  for (size_t i = 0; i < plan.sinks.size(); ++i)
    if (std::find(plan.sinks.begin() + static_cast<std::ptrdiff_t>(i) + 1, plan.sinks.end(),
                  plan.sinks[i]) != plan.sinks.end())
      return invalid("--emit " + plan.sinks[i] + " is given twice");
  if (plan.sinks.empty()) {
    // The embedded default: a SQLite frame store the other commands read (--store).
    auto path = default_sqlite_path();
    if (!path) return invalid("no --emit given and no default store: " + path.error().message);
    plan.sinks.push_back("sqlite:" + *path);
  }
  plan.log = log_mode(a.log);
  return plan;
}

struct OpenSink {
  std::string spec;
  SinkOptions options;
  std::unique_ptr<FrameSink> sink;
};

// Whether `spec`'s sink would be another with options `b` than with `a`: each kind of
// sink uses only some of the options.
bool sink_options_differ(std::string_view spec, const SinkOptions& a, const SinkOptions& b) {
  const bool queued = spec.starts_with("sqlite:") || spec.starts_with("clickhouse:");
  if (queued && a.buffer_frames != b.buffer_frames) return true;
  if (spec.starts_with("sqlite:") &&
      (a.retain_ns != b.retain_ns || a.max_store_bytes != b.max_store_bytes))
    return true;
  return spec.starts_with("file:") &&
         (a.rotate_bytes != b.rotate_bytes || a.rotate_keep != b.rotate_keep);
}

// The sinks `plan` asks for, keeping each of `current` that it names with the same
// options (a ClickHouse buffer or a Prometheus endpoint carries on) and opening the
// rest. Touches `current` only on success; what is left in it is no longer wanted.
Result<std::vector<OpenSink>> reconcile_sinks(std::vector<OpenSink>& current,
                                              const CrawlPlan& plan) {
  // A Prometheus endpoint uses no option, so it always stays: a second one could not
  // bind the port while the first still serves.
  const auto kept = [&](const std::string& spec) {
    return std::find_if(current.begin(), current.end(), [&](const OpenSink& s) {
      return s.sink && s.spec == spec && !sink_options_differ(spec, s.options, plan.sink_options);
    });
  };
  std::vector<OpenSink> next;
  for (const auto& spec : plan.sinks) {
    if (kept(spec) != current.end()) {
      next.push_back({spec, plan.sink_options, nullptr});
      continue;
    }
    auto sink = open_sink(spec, plan.sink_options);
    if (!sink) return sink.error();
    next.push_back({spec, plan.sink_options, std::move(sink).value()});
  }
  for (auto& s : next)
    if (!s.sink) s.sink = std::move(kept(s.spec)->sink);
  std::erase_if(current, [](const OpenSink& s) { return !s.sink; });
  return next;
}

// One Crawler and the thread that runs it.
class RunningCrawl {
 public:
  RunningCrawl(const CrawlPlan& plan, const std::vector<OpenSink>& sinks,
               Crawler::EventHandler on_event) {
    std::vector<FrameSink*> borrowed;
    borrowed.reserve(sinks.size());
    for (const auto& s : sinks) borrowed.push_back(s.sink.get());
    crawler_ = std::make_unique<Crawler>(plan.options, borrowed, std::move(on_event));
    thread_ = std::thread([this] {
      crawler_->run();
      finished_ = true;
    });
  }
  ~RunningCrawl() { stop(); }
  RunningCrawl(const RunningCrawl&) = delete;
  RunningCrawl& operator=(const RunningCrawl&) = delete;

  void stop() {
    if (!thread_.joinable()) return;
    crawler_->stop();
    thread_.join();
  }
  bool finished() const { return finished_; }
  CrawlerStats stats() const { return crawler_->stats(); }

 private:
  std::unique_ptr<Crawler> crawler_;
  std::thread thread_;
  std::atomic<bool> finished_ = false;
};

std::string status_line(const CrawlerStats& s, uint64_t frames) {
  size_t attached = 0;
  for (const auto& v : s.vms) attached += v.state == VmState::attached;
  return fmt::format("{} VMs ({} attached), {} frames, {}", s.vms.size(), attached, frames,
                     error_summary(s));
}

// Reads the configuration again: the command line as first given, then --config.
using Reread = std::function<Result<CrawlArgs>()>;

int run_crawl(const CrawlArgs& args, const Reread& reread) {
  // Signals are taken synchronously by this thread (sigtimedwait). Blocked before the
  // first sink or crawler thread starts, so that every thread inherits the mask: a
  // signal delivered to a sink's thread would end the process unflushed.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto first = plan_crawl(args);
  if (!first) return report_error(first.error().message);
  CrawlPlan plan = std::move(first).value();
  std::vector<OpenSink> none;
  auto opened = reconcile_sinks(none, plan);
  if (!opened) return report_error(opened.error().message);
  std::vector<OpenSink> sinks = std::move(opened).value();

  Terminal terminal;
  // Events come from crawler threads; the mode may change on reload.
  std::atomic<LogMode> log = plan.log;
  const auto on_event = [&](const CrawlerEvent& e) {
    switch (log.load()) {
      case LogMode::table:
        terminal.event(e);
        break;
      case LogMode::journal:
        journal_event(e);
        break;
      case LogMode::logfmt:
        log_event(e);
        break;
    }
  };
  const auto say = [&](CrawlerEvent::Kind kind, const char* name, std::string message) {
    CrawlerEvent e{.kind = kind};
    e.message = std::move(message);
    if (log == LogMode::journal)
      journal_event(e, name);
    else
      log_event(e, name);
  };

  auto running = std::make_unique<RunningCrawl>(plan, sinks, on_event);
  systemd::notify("READY=1");
  const auto watchdog = systemd::watchdog_period();

  const auto started = std::chrono::steady_clock::now();
  auto last_table = started, last_status = started, last_watchdog = started;
  uint64_t frames_before = 0;  // frames of the crawls before the last reload
  uint64_t last_frames = 0;
  std::string stop_reason = "done";
  while (!running->finished()) {
    timespec tick{0, 250'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      stop_reason = sig == SIGINT ? "SIGINT" : "SIGTERM";
      break;
    }
    if (sig == SIGHUP) {
      systemd::notify("RELOADING=1");
      auto reread_args = reread();
      auto next = reread_args ? plan_crawl(*reread_args) : Result<CrawlPlan>(reread_args.error());
      auto next_sinks =
          next ? reconcile_sinks(sinks, *next) : Result<std::vector<OpenSink>>(next.error());
      if (!next_sinks) {
        say(CrawlerEvent::Kind::sink_error, "reload_failed",
            next_sinks.error().message + "; the running configuration stays");
      } else {
        // The old crawl ends between two crawls; its frames reach every sink before
        // the sinks that are no longer wanted close.
        running->stop();
        const CrawlerStats old_stats = running->stats();
        frames_before += old_stats.frames;
        for (auto& s : sinks) s.sink->flush();
        uint64_t dropped = 0;
        for (auto& s : sinks) dropped += s.sink->stats().frames_buffered;
        sinks.clear();  // only the unwanted ones are left: close them
        sinks = std::move(next_sinks).value();
        // The new crawl may not watch the same VMs: sinks that show current state
        // (Prometheus) drop the old ones until their next frame.
        for (auto& kept_sink : sinks)
          for (const auto& v : old_stats.vms) kept_sink.sink->forget_vm(v.vm);
        plan = std::move(next).value();
        log = plan.log;
        running = std::make_unique<RunningCrawl>(plan, sinks, on_event);
        say(CrawlerEvent::Kind::done, "config_reloaded",
            fmt::format("{} sinks, interval {}, features {}{}", sinks.size(),
                        human_duration(static_cast<uint64_t>(plan.options.interval.count())),
                        reread_args->features,
                        dropped ? fmt::format(" ({} frames still buffered by closed sinks "
                                              "were dropped)",
                                              dropped)
                                : ""));
      }
      systemd::notify("READY=1");
    }
    const auto now = std::chrono::steady_clock::now();
    if (plan.duration.count() && now - started >= plan.duration) {
      stop_reason = "duration";
      break;
    }
    if (log == LogMode::table && now - last_table >= std::chrono::seconds(1)) {
      const CrawlerStats s = running->stats();
      const double secs = std::chrono::duration<double>(now - last_table).count();
      const uint64_t frames = frames_before + s.frames;
      terminal.update(s, static_cast<double>(frames - last_frames) / secs);
      last_frames = frames;
      last_table = now;
    }
    if (now - last_status >= std::chrono::seconds(5)) {
      const CrawlerStats now_stats = running->stats();  // one copy of every VM's stats
      systemd::notify("STATUS=" + status_line(now_stats, frames_before + now_stats.frames));
      last_status = now;
    }
    // stats() takes the crawler's lock: a scheduler that deadlocks stops the pings too
    // (a crawl that hangs is bounded by --max-crawl-time, not by the watchdog).
    if (watchdog && now - last_watchdog >= *watchdog) {
      (void)running->stats();
      systemd::notify("WATCHDOG=1");
      last_watchdog = now;
    }
  }
  systemd::notify("STOPPING=1");
  // A daemon told to stop is gone within 2 s: the sinks deliver what is queued until
  // the deadline, the rest is dropped and said.
  const auto deadline = std::chrono::steady_clock::now() + kStopFlushBudget;
  running->stop();
  for (auto& s : sinks) s.sink->flush_until(deadline);
  uint64_t abandoned = 0;
  bool busy = false;
  for (auto& s : sinks) {
    abandoned += s.sink->abandon();
    busy |= s.sink->busy();
  }
  const CrawlerStats s = running->stats();
  const uint64_t frames = frames_before + s.frames;
  if (log == LogMode::table) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    terminal.update(s, secs > 0 ? static_cast<double>(frames) / secs : 0);
    terminal.finish();
  } else {
    say(CrawlerEvent::Kind::done, "crawl_stopped",
        fmt::format("crawl stopped ({}): {} VMs, {} frames, {}, RSS {} MiB", stop_reason,
                    s.vms.size(), frames, error_summary(s), s.rss_bytes >> 20));
  }
  if (abandoned || busy)
    say(CrawlerEvent::Kind::sink_error, "frames_dropped",
        fmt::format("the sinks could not deliver {} queued frames within {} ms of the stop{}",
                    abandoned, kStopFlushBudget.count(),
                    busy ? " (a write still in progress is abandoned)" : ""));
  // Explicit targets that gave nothing at all: the command failed.
  int status = 0;
  if (!plan.options.targets.empty() && frames == 0) {
    for (const auto& v : s.vms)
      if (!v.reason.empty()) report_error(v.target + ": " + v.reason);
    status = 1;
  }
  // A store write still running past the deadline would hold the exit (the sinks join
  // their writers): leave without waiting. Stores stay consistent (SQLite rolls the
  // unfinished transaction back; a ClickHouse insert is one request).
  if (busy) {
    std::fflush(nullptr);
    std::_Exit(status);
  }
  return status;
}

// The crawl subcommand and its options, bound to `args` (no callback: the reload
// parses a fresh copy).
CLI::App* add_crawl_command(CLI::App& app, CrawlArgs& args) {
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
      "Configuration file (--config FILE; the service reads /etc/nfm/crawl.conf): every\n"
      "option below as `key = value` by its long name (emit = [\"sqlite:...\", ...],\n"
      "interval = \"1s\", no-libvirt = true, TARGET = [...]); the command line wins.\n"
      "--print-config writes the effective configuration in that format.\n\n"
      "On a terminal a live table shows each VM (state, crawls, errors, last crawl time);\n"
      "under systemd events go to the journal with fields (EVENT=, VM=, VM_PID=);\n"
      "otherwise events (vm_found, vm_attached, vm_reattached, vm_lost, sink_error, ...)\n"
      "are logged as logfmt lines on stderr. SIGINT/SIGTERM stop, flush the sinks, exit 0.\n"
      "SIGHUP reads the configuration again and goes on with it: the frames crawled before\n"
      "reach their sinks, unchanged sinks stay open, VMs are attached again.\n"
      "Under systemd (Type=notify) it reports READY, STATUS and WATCHDOG.\n\n"
      "Examples:\n"
      "  nfm crawl --emit file:/var/log/nfm/frames.jsonl\n"
      "  nfm crawl --match 'web-*' --interval 100ms --features ps,netstat --emit stdout\n"
      "  nfm crawl --count 3 qemu:guest1 /tmp/guest.dump\n"
      "  nfm crawl --config /etc/nfm/crawl.conf --print-config");
  cmd->add_option("TARGET", args.targets,
                  "explicit targets (qemu:PID, qemu:NAME, memory images) instead of discovery");
  // One value per occurrence: "--emit file:x qemu:1" leaves qemu:1 a TARGET.
  cmd->add_option("--emit,-e", args.emit,
                  "where frames go (repeatable): sqlite:PATH, clickhouse:URL, "
                  "prometheus:[ADDR:]PORT, stdout, file:PATH")
      ->allow_extra_args(false);
  cmd->add_option("--match,-m", args.match,
                  "only VMs whose name matches this glob (repeatable; discovery)")
      ->allow_extra_args(false);
  cmd->add_option("--interval,-i", args.interval, "time between crawls of a VM (1s, 100ms, 1ms)")
      ->capture_default_str();
  cmd->add_option("--features,-f", args.features,
                  "comma-separated features (ps, lsmod, dmesg, ifconfig, lsof, maps, netstat, "
                  "uname, uptime, cpuinfo, meminfo, integrity; scan with --scan-rules) or all")
      ->capture_default_str();
  cmd->add_option("--scan-rules", args.scan_rules,
                  "scan memory with these YARA rules (a .yar file or a directory; adds the scan "
                  "feature)");
  cmd->add_option("--scan-rate", args.scan_rate,
                  "bytes of guest memory each crawl of a VM scans, rotating through its "
                  "processes (64M, 1G)")
      ->capture_default_str();
  cmd->add_flag("--scan-kernel-memory", args.scan_kernel_memory,
                "the scan rotation includes the kernel image and its modules");
  cmd->add_option("--threads,-j", args.threads, "crawler threads (default: one per core)");
  add_budget_options(*cmd, args.budget);
  cmd->add_option("--count,-n", args.count, "crawl each VM N times, then exit");
  cmd->add_option("--duration", args.duration, "stop after this long (e.g. 30s, 10m)");
  cmd->add_option("--retain", args.retain, "sqlite: delete frames older than this (0: keep all)")
      ->capture_default_str();
  cmd->add_option("--max-store-size", args.max_store_size,
                  "sqlite: delete the oldest frames to keep the store under this size (0: no "
                  "limit)")
      ->capture_default_str();
  cmd->add_option("--buffer-frames", args.buffer_frames,
                  "frames a store holds while its server is down (then the oldest are dropped)")
      ->capture_default_str();
  cmd->add_option("--rotate-size", args.rotate_size, "file: rotate at this size (0: never)")
      ->capture_default_str();
  cmd->add_option("--rotate-keep", args.rotate_keep, "file: rotated files kept")
      ->capture_default_str();
  cmd->add_flag("--no-libvirt", args.no_libvirt, "do not ask libvirt for domain names");
  cmd->add_flag("--no-profile-cache", args.no_profile_cache,
                "neither use nor write the compiled-profile cache");
  cmd->add_option("--access", args.access, "live QEMU reads: auto, vm_readv or proc_mem")
      ->check(CLI::IsMember({"auto", "vm_readv", "proc_mem"}))
      ->capture_default_str();
  cmd->add_option("--log", args.log,
                  "events: auto (a table on a terminal, the journal under systemd, else "
                  "logfmt), logfmt or journal")
      ->check(CLI::IsMember({"auto", "logfmt", "journal"}))
      ->capture_default_str();
  cmd->add_option("--config", args.config,
                  "read options from this file (TOML: key = value); the command line wins")
      ->configurable(false);
  cmd->add_flag("--print-config", args.print_config,
                "print the effective configuration (file and command line) and exit")
      ->configurable(false);
  return cmd;
}

// The options again, as at start: the same command line, the config file as it is now.
Result<CrawlArgs> reread_crawl_args() {
  CLI::App root;
  CrawlArgs args;
  CLI::App* cmd = add_crawl_command(root, args);
  try {
    root.parse(command_line_argc(), command_line_argv());
  } catch (const CLI::ParseError& e) {
    return make_error(Errc::invalid_argument, e.what());
  }
  if (!args.config.empty())
    if (auto r = apply_config_file(*cmd, args.config); !r) return r.error();
  return args;
}

}  // namespace

void register_crawl(CLI::App& app) {
  auto args = std::make_shared<CrawlArgs>();
  CLI::App* cmd = add_crawl_command(app, *args);
  cmd->callback([args, cmd] {
    if (!args->config.empty())
      if (auto r = apply_config_file(*cmd, args->config); !r)
        throw CLI::RuntimeError(report_error(r.error().message));
    if (args->print_config) {
      fmt::print("{}", effective_config(*cmd));
      return;
    }
    const int status = run_crawl(*args, reread_crawl_args);
    if (status != 0) throw CLI::RuntimeError(status);
  });
}

}  // namespace nfm::app
