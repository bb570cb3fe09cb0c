#include "crawler/crawler.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "features/processes/rows.h"
#include "features/uptime/rows.h"

namespace nfm {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

uint64_t wall_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

constexpr size_t kMaxStaleKernels = 16;

}  // namespace

const char* vm_state_name(VmState state) {
  switch (state) {
    case VmState::attaching:
      return "attaching";
    case VmState::attached:
      return "attached";
    case VmState::failed:
      return "failed";
    case VmState::done:
      return "done";
    case VmState::lost:
      return "lost";
  }
  return "?";
}

const char* event_kind_name(CrawlerEvent::Kind kind) {
  using K = CrawlerEvent::Kind;
  switch (kind) {
    case K::found:
      return "vm_found";
    case K::attached:
      return "vm_attached";
    case K::attach_failed:
      return "vm_attach_failed";
    case K::reattached:
      return "vm_reattached";
    case K::kernel_lost:
      return "vm_kernel_lost";
    case K::frozen:
      return "vm_frozen";
    case K::resumed:
      return "vm_resumed";
    case K::lost:
      return "vm_lost";
    case K::done:
      return "vm_done";
    case K::sink_error:
      return "sink_error";
  }
  return "?";
}

Result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  double value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || value < 0 || text.empty())
    return make_error(Errc::invalid_argument,
                      fmt::format("bad duration '{}' (e.g. 1s, 100ms, 1h)", text));
  const std::string_view unit(p, static_cast<size_t>(end - p));
  double scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1e9;
  else if (unit == "ms")
    scale = 1e6;
  else if (unit == "us")
    scale = 1e3;
  else if (unit == "ns")
    scale = 1;
  else if (unit == "m" || unit == "min")
    scale = 60e9;
  else if (unit == "h")
    scale = 3600e9;
  else if (unit == "d")
    scale = 86400e9;
  else
    return make_error(Errc::invalid_argument,
                      fmt::format("bad duration unit in '{}' (ns, us, ms, s, m, h, d)", text));
  const double ns = value * scale;
  if (ns > 9.2e18)
    return make_error(Errc::invalid_argument, fmt::format("duration '{}' too long", text));
  return std::chrono::nanoseconds(static_cast<int64_t>(ns));
}

uint64_t process_rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

struct Crawler::Vm {
  WatchedVm watched;  // what the VM set knows: identity and what to open
  std::string key;
  VmIdentity id;
  std::string target;
  std::string ram;
  bool live = true;
  bool discovered = false;
  uint64_t start_time = 0;

  // Scheduling and stats: under Crawler::mu_.
  bool busy = false;
  bool gone = false;      // removed while a worker held it
  bool finished = false;  // nothing more to do (count reached, dump crawled, lost)
  Clock::time_point due{};
  VmState state = VmState::attaching;
  std::string reason, kernel_release;
  bool frozen = false;
  uint64_t crawls = 0, errors = 0, partial = 0, attaches = 0;
  std::map<std::string, uint64_t> feature_errors;
  uint64_t last_duration_ns = 0, last_crawl_ns = 0;

  // The worker's (only touched while busy).
  std::unique_ptr<Kernel> kernel;
  std::unique_ptr<FrameCrawler> crawler;
  std::chrono::milliseconds backoff{0};
  int failed_streak = 0;
  std::optional<uint64_t> jiffies_va;
  bool have_jiffies = false;
  uint64_t last_jiffies = 0;
  uint64_t last_uptime_ns = 0;  // of the last frame written (0: none yet)
  Clock::time_point last_tick{};
  Clock::time_point next_probe{};
  std::chrono::seconds probe_backoff{2};
  std::vector<uint64_t> stale;      // kernels known dead (their dtb): images of earlier boots
  std::vector<uint64_t> suspect;    // the kernel that stopped making sense: tried last
  std::vector<uint64_t> probation;  // stopped kernels a probe found: skipped by the next one
};

Crawler::Crawler(CrawlerOptions options, std::vector<FrameSink*> sinks, EventHandler on_event)
    : options_(std::move(options)),
      sinks_(std::move(sinks)),
      on_event_(std::move(on_event)),
      vm_set_({.targets = options_.targets,
               .discovery = options_.discovery,
               .profile = options_.profile,
               .target = options_.target,
               .open_memory = options_.open_memory}) {
  threads_ =
      options_.threads ? options_.threads : std::max(1u, std::thread::hardware_concurrency());
  sink_errors_seen_.assign(sinks_.size(), 0);
  sink_drops_seen_.assign(sinks_.size(), 0);
}

Crawler::~Crawler() {
  stop();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
}

void Crawler::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  work_cv_.notify_all();
}

void Crawler::emit(CrawlerEvent::Kind kind, const Vm* vm, std::string message) {
  if (!on_event_) return;
  CrawlerEvent e{kind, vm ? vm->id : VmIdentity{}, vm ? vm->target : "", std::move(message)};
  std::lock_guard lock(event_mu_);
  on_event_(e);
}

// ---- the VM set

void Crawler::add_vm(std::unique_ptr<Vm> vm) {
  Vm* v = vm.get();
  {
    std::lock_guard lock(mu_);
    if (vms_.count(vm->key)) return;
    vm->due = Clock::now();
    vms_[vm->key] = std::move(vm);
  }
  emit(CrawlerEvent::Kind::found, v, v->ram);
}

void Crawler::remove_vm(const std::string& key, const std::string& why) {
  std::unique_ptr<Vm> dead;
  VmIdentity id;
  {
    std::lock_guard lock(mu_);
    auto it = vms_.find(key);
    if (it == vms_.end()) return;
    Vm& vm = *it->second;
    id = vm.id;
    vm.state = VmState::lost;
    vm.reason = why;
    vm.finished = true;
    if (vm.busy) {
      vm.gone = vm.discovered;  // the scheduler drops it once the worker lets go
    } else if (vm.discovered) {
      dead = std::move(it->second);
      vms_.erase(it);
    }
    emit(CrawlerEvent::Kind::lost, &vm, why);
  }
  for (FrameSink* s : sinks_) s->forget_vm(id);
}

void Crawler::add_watched(const WatchedVm& watched) {
  auto vm = std::make_unique<Vm>();
  vm->watched = watched;
  vm->key = watched.key;
  vm->id = watched.id;
  vm->target = watched.target;
  vm->ram = watched.ram;
  vm->live = watched.live;
  vm->discovered = watched.discovered;
  vm->start_time = watched.start_time;
  if (!watched.error.empty()) {  // an explicit target that names no VM
    vm->state = VmState::failed;
    vm->reason = watched.error;
    vm->finished = true;
  }
  Vm* raw = vm.get();
  add_vm(std::move(vm));
  if (!watched.error.empty()) emit(CrawlerEvent::Kind::attach_failed, raw, watched.error);
}

void Crawler::scan(Clock::time_point) {
  // Explicit targets that are done need no more watching for their QEMU exiting.
  std::vector<std::string> finished;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, vm] : vms_)
      if (!vm->discovered && vm->finished) finished.push_back(key);
  }
  for (const auto& key : finished) vm_set_.forget(key);
  const VmSetChanges changes = vm_set_.scan();
  for (const WatchedVm& watched : changes.found) add_watched(watched);
  for (const auto& key : changes.lost) remove_vm(key, "QEMU process exited");
}

bool Crawler::all_done() const {
  if (vms_.empty()) return false;
  for (const auto& [key, vm] : vms_)
    if (!vm->finished || vm->busy) return false;
  // Discovery without a count watches for new VMs forever.
  return !options_.targets.empty() || options_.count > 0;
}

// ---- scheduling

void Crawler::run() {
  // Explicit targets, resolved once (the loop's first scan then checks they still run).
  if (!vm_set_.discovering()) scan(Clock::now());

  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    for (unsigned i = 0; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  auto next_scan = Clock::now();
  auto next_sink_check = Clock::now() + 1s;
  std::unique_lock lock(mu_);
  while (!stop_) {
    auto now = Clock::now();
    if (now >= next_scan) {
      lock.unlock();
      scan(now);
      lock.lock();
      now = Clock::now();
      next_scan = now + options_.rescan;
      if (stop_) break;
    }
    if (now >= next_sink_check) {
      lock.unlock();
      check_sinks();
      lock.lock();
      next_sink_check = now + 1s;
    }
    // Drop VMs that a worker released after they went away.
    for (auto it = vms_.begin(); it != vms_.end();) {
      if (it->second->gone && !it->second->busy && it->second->discovered)
        it = vms_.erase(it);
      else
        ++it;
    }
    if (all_done()) break;
    auto wake = std::min(next_scan, next_sink_check);
    for (auto& [key, vm] : vms_) {
      if (vm->busy || vm->finished || vm->gone) continue;
      if (vm->due <= now) {
        vm->busy = true;
        queue_.push_back(vm.get());
        work_cv_.notify_one();
      } else {
        wake = std::min(wake, vm->due);
      }
    }
    cv_.wait_until(lock, wake);
  }
  stop_ = true;
  lock.unlock();
  work_cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  check_sinks();
}

void Crawler::worker_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Vm* vm = queue_.front();
    queue_.pop_front();
    lock.unlock();
    work(*vm);
    lock.lock();
    vm->busy = false;
    cv_.notify_all();
  }
}

void Crawler::work(Vm& vm) {
  if (vm.kernel) return crawl(vm);
  const bool reattach = vm.attaches > 0;
  std::vector<uint64_t> skip = vm.stale;
  skip.insert(skip.end(), vm.suspect.begin(), vm.suspect.end());
  std::string error = attach(vm, skip, reattach);
  // The kernel that stopped making sense may simply be the one that is there (a reboot
  // that put the kernel back at the same place): try it too before backing off.
  if (!error.empty() && !vm.suspect.empty()) error = attach(vm, vm.stale, reattach);
  vm.suspect.clear();
  if (error.empty()) return;
  std::lock_guard lock(mu_);
  if (vm.finished) return;
  ++vm.errors;
  vm.reason = error;
  if (!vm.live) {
    vm.state = VmState::failed;
    vm.finished = true;
  } else {
    vm.state = reattach ? VmState::attaching : VmState::failed;
    vm.backoff = next_attach_backoff(vm.backoff);
    vm.due = Clock::now() + vm.backoff;
    vm.reason += fmt::format(" (retrying in {:g} s)", vm.backoff.count() / 1000.0);
  }
  emit(CrawlerEvent::Kind::attach_failed, &vm, vm.reason);
}

// ---- attaching

namespace {
std::string where(const Kernel& k) {
  return fmt::format("kaslr 0x{:x}, page table at 0x{:x}", k.location().kaslr_offset,
                     k.location().dtb);
}

// "kernel 6.1.0-57-amd64 (kaslr 0x..., page table at 0x...; profile warm FILE": how an
// attach is reported, whichever way the kernel was found.
std::string attached_kernel(const Kernel& k) {
  const auto& id = k.identity();
  return fmt::format("kernel {} ({}; profile {}", id.release, where(k),
                     id.profile_cache.empty() ? "-" : id.profile_cache);
}

Result<uint64_t> read_jiffies(Kernel& k, uint64_t va) {
  return k.read_value<uint64_t>(va);
}
}  // namespace

std::string Crawler::attach(Vm& vm, const std::vector<uint64_t>& skip, bool reattach) {
  const auto started = Clock::now();
  auto kernel = vm_set_.attach(vm.watched, skip);
  if (!kernel) return kernel.error().to_string();
  vm.crawler.reset();
  vm.kernel = std::move(kernel).value();
  vm.crawler = std::make_unique<FrameCrawler>(*vm.kernel);
  vm.jiffies_va.reset();
  for (const char* sym : {"jiffies_64", "jiffies"}) {
    if (auto va = vm.kernel->symbol(sym)) {
      vm.jiffies_va = *va;
      break;
    }
  }
  vm.have_jiffies = false;
  vm.last_uptime_ns = 0;
  vm.failed_streak = 0;
  vm.probe_backoff = 2s;
  const auto& id = vm.kernel->identity();
  std::string message =
      fmt::format("{}; {:.0f} ms)", attached_kernel(*vm.kernel),
                  std::chrono::duration<double, std::milli>(Clock::now() - started).count());
  std::lock_guard lock(mu_);
  if (vm.finished) return "";
  {
    if (reattach && !vm.reason.empty()) message = vm.reason + "; now " + message;
    vm.state = VmState::attached;
    vm.reason.clear();
    vm.kernel_release = id.release;
    vm.frozen = false;
    vm.backoff = 0ms;
    ++vm.attaches;
    vm.due = Clock::now();
    emit(reattach ? CrawlerEvent::Kind::reattached : CrawlerEvent::Kind::attached, &vm, message);
  }
  return "";
}

// ---- crawling

void Crawler::crawl(Vm& vm) {
  const auto started = Clock::now();
  // Shared with the sinks once complete: a queued store keeps it without a copy.
  auto shared = std::make_shared<Frame>(vm.crawler->crawl(options_.frame));
  Frame& frame = *shared;
  frame.meta.vm = vm.id;
  Kernel& k = *vm.kernel;

  // Is this still the kernel we attached to? A crawl where every feature failed, or
  // whose kernel banner is gone, reads memory that belongs to someone else now.
  bool any_ok = frame.meta.features.empty();
  bool partial = false;
  for (const auto& [f, s] : frame.meta.features) {
    any_ok |= s.ok;
    partial |= s.partial();
  }
  // A running Linux always has tasks: an empty task list is memory being reused.
  if (auto it = frame.meta.features.find(Feature::named("processes"));
      it != frame.meta.features.end() && it->second.rows == 0)
    any_ok = false;
  bool banner_ok = true;
  if (auto va = k.symbol("linux_banner"); va && !k.identity().banner.empty()) {
    auto text = k.read_string(*va, k.identity().banner.size());
    banner_ok = text && *text == k.identity().banner;
  }
  std::optional<uint64_t> jiffies;
  if (vm.jiffies_va)
    if (auto j = read_jiffies(k, *vm.jiffies_va)) jiffies = *j;
  // A clock that went back means a reboot under us: what was read is the old
  // kernel's memory being reused by the new one, not a frame of this kernel.
  const bool clock_back = (jiffies && vm.have_jiffies && *jiffies < vm.last_jiffies) ||
                          (frame.get<UptimeInfo>() && vm.last_uptime_ns &&
                           frame.get<UptimeInfo>()->uptime_ns < vm.last_uptime_ns);
  // A mapped RAM file or dump that shrank under the crawl: its tail read as zeros.
  const Result<void> intact = k.memory().check();
  const bool sane = intact && any_ok && banner_ok && !clock_back;
  if (sane && frame.get<UptimeInfo>()) vm.last_uptime_ns = frame.get<UptimeInfo>()->uptime_ns;

  if (sane) {
    const std::shared_ptr<const Frame> done = shared;  // read-only from here on
    for (FrameSink* s : sinks_) s->write_shared(done);
  }
  const auto now = Clock::now();
  {
    std::lock_guard lock(mu_);
    if (sane) {
      ++vm.crawls;
      ++frames_;
      vm.partial += partial;
      for (const auto& [feature, status] : frame.meta.features)
        for (const auto& [name, n] : status.errors)
          vm.feature_errors[std::string(feature.name())] += n;
      vm.last_duration_ns = frame.meta.duration_ns;
      vm.last_crawl_ns = wall_ns();
      if ((!vm.live && !options_.repeat_images) ||
          (options_.count && vm.crawls >= options_.count)) {
        vm.finished = true;
        vm.state = VmState::done;
        emit(CrawlerEvent::Kind::done, &vm, fmt::format("{} frames", vm.crawls));
      }
    } else {
      ++vm.errors;
      if (!vm.live) {  // a dump does not change: one try
        vm.finished = true;
        vm.state = VmState::failed;
        vm.reason = !intact     ? intact.error().message
                    : banner_ok ? "every feature failed"
                                : "kernel banner unreadable";
      }
    }
    // Next crawl one interval after this one started; late crawls do not pile up.
    vm.due = std::max(started + options_.interval, now);
    if (vm.finished || vm.gone) return;
  }
  if (!vm.live) return;

  vm.failed_streak = sane ? 0 : vm.failed_streak + 1;
  std::string lost;
  if (!intact)
    lost = intact.error().message;
  else if (vm.failed_streak >= 2)
    lost = banner_ok ? "crawls keep failing" : "the kernel banner is gone";
  else if (clock_back)
    lost = "the guest's clock went back (rebooted)";
  if (!lost.empty()) {
    // Drop it and attach afresh: a reboot moved the kernel (KASLR), or it is changing.
    const uint64_t old_dtb = k.location().dtb;
    {
      std::lock_guard lock(mu_);
      vm.state = VmState::attaching;
      vm.reason = lost;
      vm.frozen = false;
      vm.due = now + 500ms;
      emit(CrawlerEvent::Kind::kernel_lost, &vm, fmt::format("{} ({})", lost, where(k)));
    }
    vm.suspect = {old_dtb};
    vm.crawler.reset();
    vm.kernel.reset();
    return;
  }

  if (!jiffies) return;
  if (!vm.have_jiffies || *jiffies != vm.last_jiffies) {
    vm.last_tick = now;
    vm.last_jiffies = *jiffies;
    vm.have_jiffies = true;
    bool was_frozen = false;
    {
      std::lock_guard lock(mu_);
      was_frozen = vm.frozen;
      vm.frozen = false;
      if (was_frozen) emit(CrawlerEvent::Kind::resumed, &vm, "the guest's clock moves again");
    }
    vm.probe_backoff = 2s;
    return;
  }
  // The clock stands still: paused, hung, panicked — or rebooted, with this kernel's
  // image still intact in RAM while a new kernel runs elsewhere. Keep crawling it, and
  // look for a running kernel now and then.
  if (now - vm.last_tick < options_.frozen_after) return;
  bool first = false;
  {
    std::lock_guard lock(mu_);
    first = !vm.frozen;
    vm.frozen = true;
    if (first)
      emit(CrawlerEvent::Kind::frozen, &vm,
           "the guest's clock stopped (paused, hung or panicked): crawling its memory as it is");
  }
  if (first) vm.next_probe = now;
  if (now >= vm.next_probe) {
    probe_frozen(vm);
    vm.next_probe = Clock::now() + vm.probe_backoff;
    vm.probe_backoff = std::min<std::chrono::seconds>(vm.probe_backoff * 2, 16s);
  }
}

void Crawler::probe_frozen(Vm& vm) {
  std::vector<uint64_t> skip = vm.stale;
  skip.insert(skip.end(), vm.probation.begin(), vm.probation.end());
  skip.push_back(vm.kernel->location().dtb);
  auto memory = vm_set_.open(vm.watched);
  if (!memory) return;
  auto other = vm_set_.attach(std::move(memory).value(), skip);
  if (!other) {
    // No other kernel (this one is simply stopped), or only ones that looked stopped
    // too: give those another look next time (one may have been booting).
    vm.probation.clear();
    return;
  }
  Kernel& k = **other;
  std::optional<uint64_t> va;
  for (const char* sym : {"jiffies_64", "jiffies"})
    if (auto v = k.symbol(sym)) {
      va = *v;
      break;
    }
  bool alive = false;
  if (va) {
    k.begin_crawl();
    auto first = read_jiffies(k, *va);
    for (int i = 0; first && i < 5 && !alive; ++i) {
      std::this_thread::sleep_for(100ms);
      k.begin_crawl();
      auto again = read_jiffies(k, *va);
      alive = again && *again != *first;
    }
  }
  if (!alive) {
    // Another stopped kernel: the leftover of an earlier boot, or a kernel so early in
    // its boot that its clock does not tick yet. Skip it in the next probe only.
    if (vm.probation.size() < kMaxStaleKernels) vm.probation.push_back(k.location().dtb);
    return;
  }
  vm.probation.clear();
  const std::string from = where(*vm.kernel);
  if (vm.stale.size() < kMaxStaleKernels) vm.stale.push_back(vm.kernel->location().dtb);
  vm.crawler.reset();
  vm.kernel = std::move(other).value();
  vm.crawler = std::make_unique<FrameCrawler>(*vm.kernel);
  vm.jiffies_va = va;
  vm.have_jiffies = false;
  vm.last_uptime_ns = 0;
  vm.failed_streak = 0;
  vm.probe_backoff = 2s;
  const auto& id = vm.kernel->identity();
  std::lock_guard lock(mu_);
  vm.state = VmState::attached;
  vm.reason.clear();
  vm.kernel_release = id.release;
  vm.frozen = false;
  ++vm.attaches;
  vm.due = Clock::now();
  emit(CrawlerEvent::Kind::reattached, &vm,
       fmt::format("guest rebooted: the stopped kernel ({}) was a leftover, now {})", from,
                   attached_kernel(*vm.kernel)));
}

// ---- reporting

void Crawler::check_sinks() {
  for (size_t i = 0; i < sinks_.size(); ++i) {
    const SinkStats s = sinks_[i]->stats();
    if (s.write_errors > sink_errors_seen_[i]) {
      emit(CrawlerEvent::Kind::sink_error, nullptr,
           fmt::format("{}: {} failed writes: {}", sinks_[i]->describe(),
                       s.write_errors - sink_errors_seen_[i], s.last_error));
      sink_errors_seen_[i] = s.write_errors;
    }
    // A sink that falls behind drops the oldest queued frames (QueuedSink): said once
    // per check, with the count since the last.
    if (s.frames_dropped > sink_drops_seen_[i]) {
      emit(CrawlerEvent::Kind::sink_error, nullptr,
           fmt::format("{}: fell behind, dropped {} frames (oldest first)", sinks_[i]->describe(),
                       s.frames_dropped - sink_drops_seen_[i]));
      sink_drops_seen_[i] = s.frames_dropped;
    }
  }
}

CrawlerStats Crawler::stats() const {
  CrawlerStats out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, vm] : vms_) {
      if (vm->gone) continue;
      VmStats s;
      s.vm = vm->id;
      s.target = vm->target;
      s.ram = vm->ram;
      s.state = vm->state;
      s.reason = vm->reason;
      s.kernel = vm->kernel_release;
      s.frozen = vm->frozen;
      s.crawls = vm->crawls;
      s.errors = vm->errors;
      s.partial = vm->partial;
      s.feature_errors = vm->feature_errors;
      s.attaches = vm->attaches;
      s.last_duration_ns = vm->last_duration_ns;
      s.last_crawl_ns = vm->last_crawl_ns;
      out.vms.push_back(std::move(s));
    }
    out.frames = frames_;
  }
  std::sort(out.vms.begin(), out.vms.end(),
            [](const VmStats& a, const VmStats& b) { return a.vm.name < b.vm.name; });
  for (FrameSink* s : sinks_) out.sinks.push_back({s->describe(), s->stats()});
  out.rss_bytes = process_rss_bytes();
  out.threads = threads_;
  return out;
}

}  // namespace nfm
