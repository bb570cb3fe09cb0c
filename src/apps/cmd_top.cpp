// nfm top: a top for many VMs at once, each seen from inside (its kernel's own
// accounting, in its own clock) and from the host (what its vCPU threads got).
// Full-screen (ncurses) by default; -b prints plain text frames for scripts.
#include <curses.h>
#include <fmt/core.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <map>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "crawler/vm_set.h"
#include "frame/frame_crawler.h"
#include "frame/top_model.h"
#include "host/vm_host.h"
#include "store/frame_store.h"

namespace nfm::app {

namespace {

constexpr double kMinDelay = 0.1;  // 10 Hz

struct TopArgs {
  std::vector<std::string> targets;
  std::string store;
  bool batch = false;
  int iterations = 0;  // 0: until quit
  double delay = 1.0;
  std::string sort = "%CPU";
  bool reverse = false;
  std::string filter_vm, filter_name;
  std::string access = "auto";
};

// ---- Sources of samples ----

class Source {
 public:
  virtual ~Source() = default;
  // Crawls (or loads) every VM once more and builds the view.
  virtual TopView refresh() = 0;
  // Problems worth a line on screen (VMs that could not be attached, store errors).
  std::vector<std::string> notes;
  int refreshes = 0;  // views built so far
};

QemuAccess access_of(const std::string& name) {
  if (name == "vm_readv") return QemuAccess::vm_readv;
  if (name == "proc_mem") return QemuAccess::proc_mem;
  return QemuAccess::automatic;
}

// Live VMs: the explicit targets, or every QEMU VM on this host (the crawler's VM
// set: discovery, attach, back-off), each crawled at every refresh.
class LiveSource : public Source {
 public:
  LiveSource(std::vector<std::string> targets, const TopArgs& args)
      : vm_set_({.targets = std::move(targets), .target = {.access = access_of(args.access)}}) {}

  TopView refresh() override {
    ++refreshes;
    notes.clear();
    watch();
    TopView view;
    for (auto it = vms_.begin(); it != vms_.end();) {
      Vm& vm = *it;
      TopSample sample;
      if (vm.qemu_pid > 0) {
        auto host = sample_host(vm.qemu_pid);
        if (!host) {  // the VM went away
          notes.push_back(vm.id.name + ": gone (" + host.error().message + ")");
          it = vms_.erase(it);
          continue;
        }
        sample.host = std::move(host).value();
      }
      sample.frame = vm.crawler->crawl(options_);
      sample.frame.meta.vm = vm.id;
      vm.previous = std::move(vm.current);
      vm.current = std::move(sample);
      add_to_view(view, vm.previous ? &*vm.previous : nullptr, *vm.current);
      ++it;
    }
    for (const auto& [target, failure] : failed_) notes.push_back(target + ": " + failure.error);
    return view;
  }

  bool empty() const { return vms_.empty(); }

 private:
  using Clock = std::chrono::steady_clock;

  struct Vm {
    pid_t qemu_pid = 0;
    VmIdentity id;
    std::unique_ptr<Kernel> kernel;
    std::unique_ptr<FrameCrawler> crawler;
    std::optional<TopSample> previous, current;
  };
  // A VM that could not be attached (still booting?): tried again after a back-off.
  struct Failure {
    WatchedVm vm;
    std::string error;
    std::chrono::milliseconds backoff{0};
    Clock::time_point retry_at;
  };

  void watch() {
    const auto now = Clock::now();
    // Explicit targets are resolved once; VMs on this host come and go: look again
    // every few seconds.
    if (!scanned_ || (vm_set_.discovering() && now - last_scan_ >= std::chrono::seconds(3))) {
      scanned_ = true;
      last_scan_ = now;
      const VmSetChanges changes = vm_set_.scan();
      // Forget failures of VMs that are gone.
      std::erase_if(failed_, [&](const auto& f) {
        return std::find(changes.lost.begin(), changes.lost.end(), f.second.vm.key) !=
               changes.lost.end();
      });
      for (const WatchedVm& vm : changes.found) attach(vm, {});
    }
    std::vector<Failure> retry;
    for (auto it = failed_.begin(); it != failed_.end();) {
      const bool due = it->second.vm.error.empty() && now >= it->second.retry_at;
      if (!due) {
        ++it;
        continue;
      }
      retry.push_back(std::move(it->second));
      it = failed_.erase(it);
    }
    for (Failure& f : retry) attach(f.vm, f.backoff);
  }

  void attach(const WatchedVm& watched, std::chrono::milliseconds backoff) {
    auto kernel = vm_set_.attach(watched);
    if (!kernel) {
      const auto next = next_attach_backoff(backoff);
      failed_[watched.target] = {watched, kernel.error().to_string(), next, Clock::now() + next};
      return;
    }
    Vm vm;
    vm.qemu_pid = watched.live ? static_cast<pid_t>(watched.id.pid) : 0;
    // Live VMs run on this host: the view names no host for them.
    vm.id = {.name = watched.id.name, .pid = vm.qemu_pid};
    vm.kernel = std::move(kernel).value();
    vm.crawler = std::make_unique<FrameCrawler>(*vm.kernel);
    vms_.push_back(std::move(vm));
  }

  VmSet vm_set_;
  FrameOptions options_{
      // integrity: the rootkit checks' findings show under each VM's header.
      .features = {Feature::named("uptime"), Feature::named("cpuinfo"), Feature::named("meminfo"),
                   Feature::named("processes"), Feature::named("integrity")},
      .processes = {.exe = false}};
  std::vector<Vm> vms_;
  std::map<std::string, Failure> failed_;  // by target: what could not be attached, and why
  bool scanned_ = false;
  Clock::time_point last_scan_;
};

// The newest frames of every VM in a frame store (the crawler's, maybe of many
// hosts): %CPU from each VM's two newest frames.
class StoreSource : public Source {
 public:
  explicit StoreSource(std::unique_ptr<FrameStore> store) : store_(std::move(store)) {}

  TopView refresh() override {
    ++refreshes;
    notes.clear();
    TopView view;
    auto vms = store_->vms();
    if (!vms) {
      notes.push_back(store_->describe() + ": " + vms.error().to_string());
      return view;
    }
    for (const StoredVm& vm : *vms) {
      // The frames of the last minute before the newest (widened to all when fewer than two).
      constexpr uint64_t kWindow = 60ull * 1'000'000'000;
      const uint64_t since = vm.last_ns > kWindow ? vm.last_ns - kWindow : 0;
      auto refs = store_->frames(vm.vm.name, since, vm.last_ns, 1u << 20);
      if (refs && refs->size() < 2 && since > 0)
        refs = store_->frames(vm.vm.name, 0, vm.last_ns, 1u << 20);
      if (!refs || refs->empty()) {
        notes.push_back(vm.vm.name + ": " + (refs ? "no frames" : refs.error().to_string()));
        continue;
      }
      std::optional<TopSample> earlier;
      if (refs->size() >= 2) {
        auto f = store_->load((*refs)[refs->size() - 2].id);
        if (f) earlier = TopSample{std::move(f).value(), std::nullopt};
      }
      auto later = store_->load(refs->back().id);
      if (!later) {
        notes.push_back(vm.vm.name + ": " + later.error().to_string());
        continue;
      }
      TopSample sample{std::move(later).value(), std::nullopt};
      if (sample.frame.meta.vm.empty()) sample.frame.meta.vm = vm.vm;
      add_to_view(view, earlier ? &*earlier : nullptr, sample);
    }
    return view;
  }

 private:
  std::unique_ptr<FrameStore> store_;
};

// ---- Text ----

std::string duration_text(uint64_t ns) {
  const uint64_t s = ns / 1'000'000'000;
  const uint64_t days = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60;
  if (days) return fmt::format("{} days, {:2}:{:02}", days, h, m);
  return fmt::format("{:2}:{:02}:{:02}", h, m, s % 60);
}

// top's TIME+: minutes:seconds.hundredths.
std::string time_plus(uint64_t ns) {
  const uint64_t centi = ns / 10'000'000;
  return fmt::format("{}:{:02}.{:02}", centi / 6000, centi / 100 % 60, centi % 100);
}

std::string mib(uint64_t kb) {
  return fmt::format("{:.1f}", static_cast<double>(kb) / 1024.0);
}

std::vector<std::string> header_lines(const TopView& view, const std::vector<std::string>& notes,
                                      TopColumn sort, bool reverse, double delay) {
  std::vector<std::string> out;
  char clock[16];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::strftime(clock, sizeof clock, "%H:%M:%S", &tm);
  out.push_back(fmt::format("nfm top - {}, {} VM{}, {} processes, sort {}{}, every {:.1f} s", clock,
                            view.vms.size(), view.vms.size() == 1 ? "" : "s", view.rows.size(),
                            top_column_name(sort), reverse ? " (reversed)" : "", delay));
  for (const TopVm& vm : view.vms) {
    std::string line = "VM " + vm.name;
    if (!vm.host.empty()) line += " on " + vm.host;
    if (vm.qemu_pid) line += fmt::format(" (qemu pid {})", vm.qemu_pid);
    if (vm.uptime_ns) line += ": up " + duration_text(*vm.uptime_ns);
    line += fmt::format(", {} CPU{}", vm.cpus, vm.cpus == 1 ? "" : "s");
    if (vm.load)
      line += fmt::format(", load average: {:.2f}, {:.2f}, {:.2f}", (*vm.load)[0], (*vm.load)[1],
                          (*vm.load)[2]);
    out.push_back(line);
    out.push_back(fmt::format("  Tasks: {} total, {} running, {} sleeping, {} stopped, {} zombie",
                              vm.tasks.total, vm.tasks.running, vm.tasks.sleeping, vm.tasks.stopped,
                              vm.tasks.zombie));
    std::string cpu = vm.interval_s > 0
                          ? fmt::format("  Guest: {:.1f}% busy over {:.2f} s of guest time",
                                        vm.cpu_busy_pct, vm.interval_s)
                          : std::string("  Guest: (first sample: %CPU over each task's lifetime)");
    if (vm.mem)
      cpu += fmt::format("; MiB Mem: {} total, {} free, {} avail, {} buff/cache",
                         mib(vm.mem->total_kb), mib(vm.mem->free_kb), mib(vm.mem->available_kb),
                         mib(vm.mem->buffers_kb + vm.mem->cached_kb));
    out.push_back(cpu);
    if (vm.host_usage) {
      const HostUsage& h = *vm.host_usage;
      std::string host = fmt::format("  Host: vCPU {:.1f}%", h.vcpu_pct);
      if (h.vcpus_named && h.per_vcpu_pct.size() > 1) {
        std::vector<std::string> each;
        for (double p : h.per_vcpu_pct) each.push_back(fmt::format("{:.0f}", p));
        host += " (" + fmt::format("{}", fmt::join(each, " ")) + ")";
      }
      if (!h.vcpus_named)
        host += " (QEMU process: vCPU threads unnamed, start QEMU with -name ...,debug-threads=on)";
      host += h.steal_pct ? fmt::format(", steal {:.1f}%", *h.steal_pct) : std::string(", steal -");
      host += fmt::format(", QEMU {:.1f}% CPU, {} MiB RSS", h.qemu_cpu_pct, mib(h.rss_kb));
      out.push_back(host);
    }
    for (const std::string& p : vm.problems) out.push_back("  warning: " + p);
    for (const std::string& f : vm.findings) out.push_back("  check: " + f);
  }
  for (const std::string& n : notes) out.push_back("note: " + n);
  return out;
}

size_t vm_width(const TopView& view) {
  size_t w = 2;
  for (const TopVm& vm : view.vms) w = std::max(w, vm.name.size());
  return std::min<size_t>(w, 24);
}

std::string column_header(size_t vmw) {
  return fmt::format("{:<{}} {:>7} {:<8} {:>3} {:>3} {:>9} {:>8} {:1} {:>5} {:>5} {:>5} {:>9} {}",
                     "VM", vmw, "PID", "USER", "PR", "NI", "VIRT", "RES", "S", "%CPU", "%HOST",
                     "%MEM", "TIME+", "COMMAND");
}

std::string row_text(const TopRow& r, size_t vmw) {
  const std::string pr = r.prio <= -100 ? "rt" : std::to_string(r.prio);
  const std::string host = r.host_pct ? fmt::format("{:.1f}", *r.host_pct) : "-";
  return fmt::format(
      "{:<{}} {:>7} {:<8} {:>3} {:>3} {:>9} {:>8} {:1} {:>5.1f} {:>5} {:>5.1f} {:>9} {}",
      r.vm.substr(0, vmw), vmw, r.pid, r.uid, pr, r.nice, r.virt_kb, r.res_kb, r.state, r.cpu_pct,
      host, r.mem_pct, time_plus(r.time_ns), r.command);
}

void sleep_for(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// ---- Batch ----

int run_batch(Source& source, const TopArgs& args, TopColumn sort) {
  // The first view needs an interval too: one crawl before it, like top's first frame.
  if (!source.refreshes) source.refresh();
  const TopFilter filter{args.filter_vm, args.filter_name};
  for (int i = 0; args.iterations == 0 || i < args.iterations; ++i) {
    sleep_for(args.delay);
    TopView view = source.refresh();
    filter_view(view, filter);
    sort_rows(view.rows, sort, args.reverse);
    std::string text;
    for (const std::string& line : header_lines(view, source.notes, sort, args.reverse, args.delay))
      text += line + "\n";
    const size_t vmw = vm_width(view);
    text += "\n" + column_header(vmw) + "\n";
    for (const TopRow& r : view.rows) text += row_text(r, vmw) + "\n";
    fmt::print("{}\n", text);
    std::fflush(stdout);
  }
  return 0;
}

// ---- Full screen ----

std::atomic<bool> g_quit{false};

void on_signal(int) {
  g_quit = true;
}

// A one-line prompt at `row`; returns what was typed ("" on empty input).
std::string prompt(int row, const std::string& question) {
  move(row, 0);
  clrtoeol();
  attron(A_BOLD);
  addnstr(question.c_str(), COLS - 1);
  attroff(A_BOLD);
  echo();
  curs_set(1);
  timeout(-1);
  char buf[256] = {};
  getnstr(buf, sizeof buf - 1);
  noecho();
  curs_set(0);
  return buf;
}

void draw(const TopView& raw, const std::vector<std::string>& notes, const TopArgs& args,
          TopColumn sort, const TopFilter& filter, const std::string& message) {
  TopView view = raw;
  filter_view(view, filter);
  sort_rows(view.rows, sort, args.reverse);
  erase();
  int y = 0;
  for (const std::string& line : header_lines(view, notes, sort, args.reverse, args.delay)) {
    if (y >= LINES - 2) break;
    mvaddnstr(y++, 0, line.c_str(), COLS);
  }
  std::string status = message;
  if (status.empty()) {
    status =
        "keys: q quit, P %CPU, H %HOST, M %MEM, T TIME+, N PID, < > sort column, R reverse, o or / "
        "filter, d or s delay";
    if (!filter.empty())
      status =
          fmt::format("filter: vm~'{}' name~'{}' (o: change, = clears)  ", filter.vm, filter.name) +
          status;
  }
  if (y < LINES) mvaddnstr(y++, 0, status.c_str(), COLS);
  const size_t vmw = vm_width(view);
  if (y < LINES) {
    std::string head = column_header(vmw);
    head.resize(std::max<size_t>(head.size(), static_cast<size_t>(COLS)), ' ');
    attron(A_REVERSE);
    mvaddnstr(y++, 0, head.c_str(), COLS);
    attroff(A_REVERSE);
  }
  for (const TopRow& r : view.rows) {
    if (y >= LINES) break;
    mvaddnstr(y++, 0, row_text(r, vmw).c_str(), COLS);
  }
  refresh();
}

int run_screen(Source& source, TopArgs args, TopColumn sort) {
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
    return report_error("the full-screen view needs a terminal; use -b for batch output");
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // newterm, unlike initscr, returns instead of exiting when TERM is unusable.
  SCREEN* screen = newterm(nullptr, stdout, stdin);
  if (!screen)
    return report_error("cannot use this terminal (TERM=" +
                        std::string(getenv("TERM") ? getenv("TERM") : "") + ")");
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  curs_set(0);
  TopFilter filter{args.filter_vm, args.filter_name};
  std::string message = "crawling...";
  TopView view;
  draw(view, {}, args, sort, filter, message);
  if (!source.refreshes) source.refresh();
  // The first view after a short interval, then every `delay`.
  auto next =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(std::min(args.delay, 0.5));
  int frames = 0;
  message.clear();
  while (!g_quit) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next) {
      view = source.refresh();
      ++frames;
      next = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(args.delay));
      draw(view, source.notes, args, sort, filter, message);
      if (args.iterations && frames >= args.iterations) break;
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        next - std::chrono::steady_clock::now());
    timeout(static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 60'000)));
    const int key = getch();
    if (key == ERR) continue;
    message.clear();
    const int prompt_row = std::min<int>(LINES - 1, 0);
    switch (key) {
      case 'q':
      case 'Q':
        g_quit = true;
        break;
      case 'P':
        sort = TopColumn::cpu;
        break;
      case 'H':
        sort = TopColumn::host;
        break;
      case 'M':
        sort = TopColumn::mem;
        break;
      case 'T':
        sort = TopColumn::time;
        break;
      case 'N':
        sort = TopColumn::pid;
        break;
      case 'R':
        args.reverse = !args.reverse;
        break;
      case '<':
        sort = static_cast<TopColumn>((static_cast<int>(sort) + kTopColumns - 1) % kTopColumns);
        break;
      case '>':
        sort = static_cast<TopColumn>((static_cast<int>(sort) + 1) % kTopColumns);
        break;
      case '=':
        filter = {};
        break;
      case 'o':
      case 'O':
      case '/': {
        const std::string text =
            prompt(prompt_row, "filter (NAME, vm:VM, or both; empty clears): ");
        filter = {};
        size_t start = 0;
        while (start < text.size()) {
          size_t end = text.find(' ', start);
          if (end == std::string::npos) end = text.size();
          const std::string word = text.substr(start, end - start);
          if (word.rfind("vm:", 0) == 0)
            filter.vm = word.substr(3);
          else if (!word.empty())
            filter.name = word;
          start = end + 1;
        }
        break;
      }
      case 'd':
      case 's': {
        const std::string text = prompt(
            prompt_row,
            fmt::format("delay in seconds (now {:.1f}, at least {}): ", args.delay, kMinDelay));
        try {
          const double d = std::stod(text);
          if (d >= kMinDelay && d <= 3600) {
            args.delay = d;
            next = std::chrono::steady_clock::now();
          } else {
            message = fmt::format("delay must be between {} and 3600 seconds", kMinDelay);
          }
        } catch (const std::exception&) {
          if (!text.empty()) message = "not a number: " + text;
        }
        break;
      }
      case KEY_RESIZE:
        break;
      default:
        message =
            fmt::format("unknown key '{}'", key < 128 && key >= 32 ? static_cast<char>(key) : '?');
        break;
    }
    draw(view, source.notes, args, sort, filter, message);
  }
  endwin();
  delscreen(screen);
  return 0;
}

}  // namespace

void register_top(CLI::App& app) {
  auto args = std::make_shared<TopArgs>();
  CLI::App* cmd = app.add_subcommand(
      "top",
      "A top for VMs: every process of every watched VM, as the guest sees it and as the host "
      "runs it");
  cmd->footer(
      "Without TARGET: every QEMU VM on this host. %CPU is the guest's own accounting over\n"
      "the interval, in the guest's clock (a capped VM still sees a busy process at 100%);\n"
      "%HOST is that process's share of its guest's CPU time times the host CPU the VM's\n"
      "vCPU threads actually got (QEMU names them with -name ...,debug-threads=on).\n"
      "Keys: q quit; P %CPU, H %HOST, M %MEM, T TIME+, N PID; < > move the sort column;\n"
      "R reverse; o or / filter (NAME, vm:VM); = clear the filter; d or s refresh delay.");
  cmd->add_option("TARGET", args->targets, "qemu:PID or qemu:NAME (default: all QEMU VMs here)");
  cmd->add_option("--store", args->store,
                  "read the newest frames from a store: sqlite:PATH or clickhouse:URL");
  cmd->add_flag("-b,--batch", args->batch, "print plain text frames instead of the screen");
  cmd->add_option("-n,--iterations", args->iterations, "stop after N frames (default: until q)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-d,--delay", args->delay, "seconds between frames (0.1 = 10 Hz)")
      ->check(CLI::Range(kMinDelay, 3600.0));
  cmd->add_option(
      "-o,--sort", args->sort,
      "sort column: %CPU (cpu), %HOST (host), %MEM (mem), TIME+ (time), PID, VM, RES, ...");
  cmd->add_flag("-R,--reverse", args->reverse, "reverse the sort order");
  cmd->add_option("--vm", args->filter_vm, "only VMs whose name contains this");
  cmd->add_option("--name", args->filter_name,
                  "only processes whose name or command contains this");
  cmd->add_option("--access", args->access, "live QEMU reads: auto, vm_readv or proc_mem")
      ->check(CLI::IsMember({"auto", "vm_readv", "proc_mem"}));
  cmd->callback([args] {
    auto sort = parse_top_column(args->sort);
    if (!sort) throw CLI::RuntimeError(report_error("unknown sort column: " + args->sort));
    std::unique_ptr<Source> source;
    if (!args->store.empty()) {
      if (!args->targets.empty())
        throw CLI::RuntimeError(report_error("give either TARGETs or --store, not both"));
      auto store = open_store(args->store);
      if (!store) throw CLI::RuntimeError(report_error(store.error().to_string()));
      source = std::make_unique<StoreSource>(std::move(store).value());
    } else {
      auto live = std::make_unique<LiveSource>(args->targets, *args);
      live->refresh();  // attach now, so that bad targets fail before the screen opens
      if (live->empty()) {
        std::string why =
            args->targets.empty() ? "no QEMU VMs found on this host" : "no VM could be read";
        if (!live->notes.empty()) why += ": " + live->notes.front();
        throw CLI::RuntimeError(report_error(why));
      }
      source = std::move(live);
    }
    const int status =
        args->batch ? run_batch(*source, *args, *sort) : run_screen(*source, *args, *sort);
    if (status) throw CLI::RuntimeError(status);
  });
}

}  // namespace nfm::app
