#include "frame/frame_crawler.h"

#include <algorithm>
#include <chrono>

#include "kernel/kernel.h"

namespace nfm {

namespace {

uint64_t now_ns(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

uint64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Frame FrameCrawler::crawl(const FrameOptions& options) {
  Frame frame;
  FrameMeta& meta = frame.meta;
  meta.target = kernel_->memory().describe();
  meta.kernel = kernel_->identity();
  meta.host_time_ns = now_ns(std::chrono::system_clock::now());
  const MemoryStats mem0 = kernel_->memory().stats();
  const PagingStats paging0 = kernel_->space().stats();
  const uint64_t start = steady_ns();

  kernel_->begin_crawl();
  ReadBudget& budget = kernel_->budget();
  CrawlBudget limits = options.budget;
  uint64_t ram = 0;
  for (const PhysRange& r : kernel_->memory().ranges()) ram = std::max(ram, ram + r.size);
  limits.max_bytes = crawl_bytes_for(limits.max_bytes, ram);
  budget.begin(limits, kernel_->memory().stats().bytes);
  context_.begin(options.processes, options.feature_options, frame.sections);
  // In frame order whatever the caller's: processes come before the features
  // that share its task list.
  for (Feature feature : all_features()) {
    if (std::find(options.features.begin(), options.features.end(), feature) ==
        options.features.end())
      continue;
    FeatureStatus& status = meta.features[feature];
    if (budget.spent()) {
      status.error = "not crawled: an earlier feature " + budget.reason();
      continue;
    }
    const uint64_t t0 = steady_ns();
    // Errors inside a section are counted, not fatal: a torn list still gives
    // the rows read before the tear.
    std::any section = feature.info().crawl(context_, status);
    if (section.has_value()) {
      frame.sections.insert_or_assign(feature.name(), std::move(section));
      status.ok = true;
    }
    // This feature ran the budget out: its rows stop where the reads did.
    if (budget.spent()) {
      status.count_error("crawl_budget", 1);
      meta.budget_spent = std::string(feature.name()) + ": " + budget.reason();
    }
    status.duration_ns = steady_ns() - t0;
  }

  budget.end();
  // Memory that shrank under the crawl (a truncated RAM file or dump) read as
  // zeros past its new end: nothing read from it is the guest's.
  if (auto intact = kernel_->memory().check(); !intact) {
    frame.sections.clear();
    for (auto& [feature, status] : meta.features) {
      status.ok = false;
      status.error = intact.error().message;
      status.rows = 0;
    }
  }

  meta.duration_ns = steady_ns() - start;
  const MemoryStats& mem = kernel_->memory().stats();
  const PagingStats& paging = kernel_->space().stats();
  meta.cost = {.reads = mem.reads - mem0.reads,
               .bytes = mem.bytes - mem0.bytes,
               .syscalls = mem.syscalls - mem0.syscalls,
               .read_failures = mem.failures - mem0.failures,
               .page_walks = paging.walks - paging0.walks,
               .translation_cache_hits = paging.cache_hits - paging0.cache_hits,
               .direct_map_hits = paging.direct_map_hits - paging0.direct_map_hits,
               .translation_faults = paging.faults - paging0.faults};
  return frame;
}

}  // namespace nfm
