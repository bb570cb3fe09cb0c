// The crawler: nfm's main job. Watches a set of VMs (the host's QEMU guests, found
// again every few seconds, and/or explicit targets), keeps each attached to its
// kernel, crawls each at a fixed interval on a bounded thread pool and hands every
// frame to the sinks. A library: it reports through events and stats(), never prints.
//
// Per VM: discovered -> attaching -> attached (crawled every interval) ... -> lost
// (QEMU exited). A VM whose kernel changed under us (guest reboot: KASLR moved the
// kernel even when it is the same build) is re-attached with back-off; a hung or
// panicked guest stays attached and keeps being crawled from its memory.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "crawler/vm_set.h"
#include "frame/frame_crawler.h"
#include "host/qemu/discovery.h"
#include "host/target.h"
#include "kernel/kernel.h"
#include "store/frame_sink.h"

namespace nfm {

struct CrawlerOptions {
  // Explicit targets (qemu:PID, qemu:NAME, dump files). Empty: discover the host's VMs.
  std::vector<std::string> targets;
  DiscoveryOptions discovery;  // name globs, libvirt
  std::chrono::nanoseconds interval = std::chrono::seconds(1);
  std::chrono::nanoseconds rescan = std::chrono::seconds(3);  // discovery period
  unsigned threads = 0;                                       // 0: one per host core
  uint64_t count = 0;  // crawls per VM, then done (0: forever)
  FrameOptions frame;
  ProfileOptions profile;
  TargetOptions target;
  // Memory images are crawled at the interval like live VMs, not once (the fleet
  // benchmark and tests crawl images as stand-ins for VMs).
  bool repeat_images = false;
  // VmSetOptions::open_memory: memory of the caller's choosing for each VM.
  std::function<Result<PhysicalMemoryPtr>(const WatchedVm&)> open_memory;
  // Stale-kernel probe (see crawler.cpp): a guest whose clock has not moved for
  // `frozen_after` is checked for a newer kernel elsewhere in its RAM.
  std::chrono::nanoseconds frozen_after = std::chrono::seconds(3);
};

enum class VmState { attaching, attached, failed, done, lost };
const char* vm_state_name(VmState state);

struct CrawlerEvent {
  enum class Kind {
    found,     // a VM appeared (discovery or explicit target)
    attached,  // first attach succeeded
    attach_failed,
    reattached,   // kernel changed (reboot) and the crawler followed it
    kernel_lost,  // crawls stopped making sense; re-attaching
    frozen,       // the guest's clock stopped (paused, hung or panicked): still crawled
    resumed,      // ... and moves again
    lost,         // the QEMU process exited
    done,         // --count reached, or a dump's one frame
    sink_error,
  };
  Kind kind;
  VmIdentity vm;  // empty for sink events
  std::string target;
  std::string message;  // details: reason, kernel release, addresses, sink
};
const char* event_kind_name(CrawlerEvent::Kind kind);

struct VmStats {
  VmIdentity vm;
  std::string target;
  std::string ram;  // RAM size and backend, for discovered VMs
  VmState state = VmState::attaching;
  std::string reason;    // why attaching/failed, else ""
  std::string kernel;    // release once attached
  bool frozen = false;   // guest clock not moving
  uint64_t crawls = 0;   // frames produced
  uint64_t errors = 0;   // crawls that failed as a whole + failed attaches
  uint64_t partial = 0;  // frames with a partial or failed feature
  // Items lost inside frames (rows skipped, torn walks, implausible values, a spent
  // crawl budget), summed over frames by feature: what `partial` is made of.
  std::map<std::string, uint64_t> feature_errors;
  uint64_t attaches = 0;  // successful attaches (1 + re-attaches)
  uint64_t last_duration_ns = 0;
  uint64_t last_crawl_ns = 0;  // host wall time of the last frame
};

struct NamedSinkStats {
  std::string sink;  // describe()
  SinkStats stats;
};

struct CrawlerStats {
  std::vector<VmStats> vms;  // by name
  std::vector<NamedSinkStats> sinks;
  uint64_t frames = 0;     // total since start
  uint64_t rss_bytes = 0;  // this process
  unsigned threads = 0;
};

// "1s", "100ms", "1ms", "250us", "2.5s", "5m", "1h", "2d"; a bare number is seconds.
Result<std::chrono::nanoseconds> parse_duration(std::string_view text);

// Resident set size of this process (/proc/self/statm), 0 if unknown.
uint64_t process_rss_bytes();

class Crawler {
 public:
  using EventHandler = std::function<void(const CrawlerEvent&)>;

  // Sinks are borrowed: they outlive the crawler. `on_event` is called from crawler
  // threads (serialized by the crawler) and must not call back into the crawler.
  Crawler(CrawlerOptions options, std::vector<FrameSink*> sinks, EventHandler on_event = {});
  ~Crawler();
  Crawler(const Crawler&) = delete;
  Crawler& operator=(const Crawler&) = delete;

  // Runs until stop() or, with count / only dumps, until every VM is done. Flushes
  // no sinks (the caller owns them).
  void run();
  // Thread- and signal-handler-safe in the sense that it only sets a flag and notifies.
  void stop();
  CrawlerStats stats() const;

 private:
  struct Vm;
  void scan(std::chrono::steady_clock::time_point now);
  void add_watched(const WatchedVm& watched);
  void add_vm(std::unique_ptr<Vm> vm);
  void remove_vm(const std::string& key, const std::string& why);
  void schedule(std::chrono::steady_clock::time_point now);
  void work(Vm& vm);
  // Attaches `vm` (skipping the kernels in `skip`); "" on success, else why not.
  std::string attach(Vm& vm, const std::vector<uint64_t>& skip, bool reattach);
  void crawl(Vm& vm);
  void probe_frozen(Vm& vm);
  void emit(CrawlerEvent::Kind kind, const Vm* vm, std::string message);
  void check_sinks();
  bool all_done() const;
  void worker_loop();

  CrawlerOptions options_;
  std::vector<FrameSink*> sinks_;
  EventHandler on_event_;
  unsigned threads_ = 1;
  VmSet vm_set_;  // which VMs, and attaching them; scanned by the scheduler thread only

  mutable std::mutex mu_;                           // guards vms_, queue_, stop_, frames_
  std::condition_variable cv_;                      // scheduler wake-ups
  std::condition_variable work_cv_;                 // worker wake-ups
  std::map<std::string, std::unique_ptr<Vm>> vms_;  // by key
  std::deque<Vm*> queue_;
  bool stop_ = false;
  uint64_t frames_ = 0;
  std::vector<std::thread> workers_;
  std::mutex event_mu_;
  std::vector<uint64_t> sink_errors_seen_, sink_drops_seen_;
};

}  // namespace nfm
