// A frame: one crawl of one guest, as typed rows per feature, with what the crawl
// cost and everything that went wrong. The crawler daemon, the stores and `nfm frame`
// all speak frames; docs/frame-schema.md documents their JSON form.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "features/cpuinfo/cpuinfo.h"
#include "features/interfaces/interfaces.h"
#include "features/kmsg/kmsg.h"
#include "features/meminfo/meminfo.h"
#include "features/memory_maps/memory_maps.h"
#include "features/modules/modules.h"
#include "features/open_files/open_files.h"
#include "features/processes/processes.h"
#include "features/sockets/sockets.h"
#include "features/uname/uname.h"
#include "features/uptime/uptime.h"
#include "kernel/kernel.h"

namespace nfm {

// Bumped whenever a key changes meaning or disappears (adding keys is compatible).
inline constexpr int kFrameSchemaVersion = 1;

enum class Feature {
  uname,
  uptime,
  cpuinfo,
  meminfo,
  processes,
  modules,
  kmsg,
  interfaces,
  open_files,
  memory_maps,
  sockets,
};

std::string_view feature_name(Feature feature);
std::optional<Feature> parse_feature(std::string_view name);
// Every feature, in frame order.
const std::vector<Feature>& all_features();
// "ps,lsmod" style lists: feature names, or "all". Unknown names are an error.
Result<std::vector<Feature>> parse_feature_list(std::string_view list);

// How one feature's part of the crawl went. A feature either produced rows (maybe
// partial: a walk that ended early, rows skipped) or failed as a whole (`error`).
struct FeatureStatus {
  bool ok = false;
  std::string error;                        // why it failed, when !ok
  std::string walk;                         // how its main walk ended ("complete", "torn", ...)
  std::map<std::string, uint64_t> errors;   // items lost to bad reads or torn data (non-zero)
  std::map<std::string, uint64_t> skipped;  // items absent for normal reasons (non-zero)
  uint64_t rows = 0;
  uint64_t duration_ns = 0;
  bool partial() const { return !ok || (!walk.empty() && walk != "complete") || !errors.empty(); }
};

// What one crawl cost the monitor (differences of the source and paging counters).
struct CrawlCost {
  uint64_t reads = 0, bytes = 0, syscalls = 0, read_failures = 0;
  uint64_t page_walks = 0, translation_cache_hits = 0, direct_map_hits = 0, translation_faults = 0;
};

// Which VM a frame is about, as the host names it. Empty for `nfm frame` on a dump;
// the crawler fills it from discovery (QEMU -name, libvirt domain, host name).
struct VmIdentity {
  std::string name;  // QEMU -name / libvirt domain name; else "pid-N" or the dump's file name
  std::string uuid;  // -uuid / libvirt UUID, when known
  int64_t pid = 0;   // QEMU process id on the host (0 for dumps)
  std::string host;  // the host's name (gethostname)
  bool empty() const { return name.empty() && uuid.empty() && pid == 0 && host.empty(); }
};

struct FrameMeta {
  VmIdentity vm;
  std::string target;  // the memory source, as it describes itself
  KernelIdentity kernel;
  uint64_t host_time_ns = 0;  // host wall clock when the crawl began (ns since the epoch)
  uint64_t duration_ns = 0;   // whole crawl, host time
  CrawlCost cost;
  std::map<Feature, FeatureStatus> features;  // one entry per feature asked for
};

struct Frame {
  FrameMeta meta;
  std::optional<UnameInfo> uname;
  std::optional<UptimeInfo> uptime;
  std::optional<std::vector<CpuRow>> cpuinfo;
  std::optional<MemInfo> meminfo;
  std::optional<ProcessList> processes;
  std::optional<ModuleList> modules;
  std::optional<KmsgLog> kmsg;
  std::optional<InterfaceList> interfaces;
  std::optional<OpenFileList> open_files;
  std::optional<MemoryMapList> memory_maps;
  std::optional<SocketList> sockets;
};

struct FrameOptions {
  std::vector<Feature> features = all_features();
  ProcessOptions processes{.exe = true};
};

// Crawls one attached kernel again and again. Each feature's reader resolves its
// layout once, on first use; a feature this kernel cannot provide fails alone.
class FrameCrawler {
 public:
  explicit FrameCrawler(Kernel& kernel) : kernel_(&kernel) {}
  Frame crawl(const FrameOptions& options = {});

 private:
  void crawl_feature(Feature feature, const FrameOptions& options, Frame& frame,
                     FeatureStatus& status);
  template <typename Reader>
  Reader* reader(std::optional<Result<Reader>>& slot, FeatureStatus& status);
  const ProcessList* shared_tasks(const FrameOptions& options, const Frame& frame);

  Kernel* kernel_;
  std::optional<Result<ProcessReader>> processes_;
  std::optional<Result<ModuleReader>> modules_;
  std::optional<Result<KmsgReader>> kmsg_;
  std::optional<Result<InterfaceReader>> interfaces_;
  std::optional<Result<OpenFileReader>> open_files_;
  std::optional<Result<MemoryMapReader>> memory_maps_;
  std::optional<Result<SocketReader>> sockets_;
  // This frame's task list for the per-process features when the frame has no
  // processes section to share (shared_tasks()); reset every crawl.
  std::optional<ProcessList> tasks_;
};

}  // namespace nfm
