// A frame: one crawl of one guest, as sections of typed rows per feature, with
// what the crawl cost and everything that went wrong. The crawler daemon, the
// stores and `nfm frame` all speak frames; docs/frame-schema.md documents their
// JSON form. Kernel-free: stores and apps include this, not the kernel model
// (frame_crawler.h makes frames from a kernel).
#pragma once

#include <any>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "features/feature.h"
#include "features/processes/rows.h"
#include "kernel/identity.h"
#include "memory/read_budget.h"

namespace nfm {

// Bumped whenever a key changes meaning or disappears (adding keys is compatible).
inline constexpr int kFrameSchemaVersion = 1;

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
  // "FEATURE: why" when the crawl's budget ran out (memory/read_budget.h), else "".
  std::string budget_spent;
};

struct Frame {
  FrameMeta meta;
  Sections sections;  // by feature name: ProcessList, UnameInfo, ...

  // The section of type S (whose S::kFeature names it), or nullptr.
  template <typename S>
  const S* get() const {
    auto it = sections.find(S::kFeature);
    return it == sections.end() ? nullptr : std::any_cast<S>(&it->second);
  }
  template <typename S>
  S* get() {
    auto it = sections.find(S::kFeature);
    return it == sections.end() ? nullptr : std::any_cast<S>(&it->second);
  }
  template <typename S>
  void set(S section) {
    sections.insert_or_assign(S::kFeature, std::any(std::move(section)));
  }
};

struct FrameOptions {
  std::vector<Feature> features = default_features();
  ProcessOptions processes{.exe = true};
  FeatureOptions feature_options;  // the other features' own options, by feature name
  CrawlBudget budget;              // what one crawl may read and how long it may take
};

}  // namespace nfm
