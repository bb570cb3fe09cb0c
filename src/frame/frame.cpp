#include "frame/frame.h"

#include <algorithm>
#include <chrono>

namespace nfm {

namespace {

constexpr std::pair<Feature, std::string_view> kNames[] = {
    {Feature::uname, "uname"},
    {Feature::uptime, "uptime"},
    {Feature::cpuinfo, "cpuinfo"},
    {Feature::meminfo, "meminfo"},
    {Feature::processes, "processes"},
    {Feature::modules, "modules"},
    {Feature::kmsg, "kmsg"},
    {Feature::interfaces, "interfaces"},
    {Feature::open_files, "open_files"},
    {Feature::memory_maps, "memory_maps"},
    {Feature::sockets, "sockets"},
};

// The command names users know, as aliases in --features lists.
constexpr std::pair<std::string_view, Feature> kAliases[] = {
    {"ps", Feature::processes},    {"lsmod", Feature::modules},
    {"dmesg", Feature::kmsg},      {"ifconfig", Feature::interfaces},
    {"lsof", Feature::open_files}, {"maps", Feature::memory_maps},
    {"netstat", Feature::sockets}};

uint64_t now_ns(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

uint64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void count(FeatureStatus& status, const char* name, uint64_t n) {
  if (n) status.errors[name] = n;
}

void count_skipped(FeatureStatus& status, const char* name, uint64_t n) {
  if (n) status.skipped[name] = n;
}

}  // namespace

std::string_view feature_name(Feature feature) {
  for (const auto& [f, name] : kNames)
    if (f == feature) return name;
  return "?";
}

std::optional<Feature> parse_feature(std::string_view name) {
  for (const auto& [f, n] : kNames)
    if (n == name) return f;
  for (const auto& [n, f] : kAliases)
    if (n == name) return f;
  return std::nullopt;
}

const std::vector<Feature>& all_features() {
  static const std::vector<Feature> all = [] {
    std::vector<Feature> v;
    for (const auto& [f, name] : kNames) v.push_back(f);
    return v;
  }();
  return all;
}

Result<std::vector<Feature>> parse_feature_list(std::string_view list) {
  if (list == "all") return all_features();
  std::vector<Feature> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view name = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (name.empty()) continue;
    auto f = parse_feature(name);
    if (!f) {
      std::string known;
      for (const auto& [_, n] : kNames)
        known += std::string(known.empty() ? "" : ", ") + std::string(n);
      return Error{Errc::invalid_argument,
                   "unknown feature '" + std::string(name) + "' (known: " + known + ", or all)"};
    }
    if (std::find(out.begin(), out.end(), *f) == out.end()) out.push_back(*f);
  }
  if (out.empty()) return Error{Errc::invalid_argument, "no features given"};
  return out;
}

template <typename Reader>
Reader* FrameCrawler::reader(std::optional<Result<Reader>>& slot, FeatureStatus& status) {
  if (!slot) slot.emplace(Reader::create(*kernel_));
  if (!*slot) {
    status.error = (*slot).error().to_string();
    return nullptr;
  }
  return &(*slot).value();
}

// Open files, memory maps and socket owners each visit every process: within one
// frame they share one walk of the task list, the processes section's when the
// frame has one (a row per process), else one made for them. nullptr (each walks
// on its own) only when that walk failed: they then report why themselves.
const ProcessList* FrameCrawler::shared_tasks(const FrameOptions& options, const Frame& frame) {
  if (frame.processes && !options.processes.threads) return &*frame.processes;
  if (!tasks_) {
    FeatureStatus ignored;
    ProcessReader* reader = this->reader(processes_, ignored);
    if (!reader) return nullptr;
    auto list = reader->list({.max_tasks = options.processes.max_tasks, .cmdline = false});
    if (!list) return nullptr;
    tasks_ = std::move(*list);
  }
  return &*tasks_;
}

void FrameCrawler::crawl_feature(Feature feature, const FrameOptions& options, Frame& frame,
                                 FeatureStatus& status) {
  // Each case: produce the section or say why not. Errors inside a section are
  // counted, not fatal: a torn list still gives the rows read before the tear.
  auto fail = [&](const Error& e) { status.error = e.to_string(); };
  switch (feature) {
    case Feature::uname: {
      auto r = read_uname(*kernel_);
      if (!r) return fail(r.error());
      frame.uname = std::move(*r);
      status.rows = 1;
      break;
    }
    case Feature::uptime: {
      auto r = read_uptime(*kernel_);
      if (!r) return fail(r.error());
      frame.uptime = *r;
      status.rows = 1;
      break;
    }
    case Feature::cpuinfo: {
      auto r = read_cpuinfo(*kernel_);
      if (!r) return fail(r.error());
      status.rows = r->size();
      frame.cpuinfo = std::move(*r);
      break;
    }
    case Feature::meminfo: {
      auto r = read_meminfo(*kernel_);
      if (!r) return fail(r.error());
      frame.meminfo = *r;
      status.rows = 1;
      break;
    }
    case Feature::processes: {
      ProcessReader* reader = this->reader(processes_, status);
      if (!reader) return;
      auto r = reader->list(options.processes);
      if (!r) return fail(r.error());
      status.walk = walk_end_name(r->walk.end);
      count(status, "row_errors", r->row_errors);
      count(status, "thread_walk_errors", r->thread_walk_errors);
      count(status, "memory_errors", r->memory_errors);
      count(status, "cmdline_errors", r->cmdline_errors);
      count_skipped(status, "cmdline_truncated", r->cmdline_truncated);
      count(status, "exe_errors", r->exe_errors);
      status.rows = r->rows.size();
      frame.processes = std::move(*r);
      break;
    }
    case Feature::modules: {
      ModuleReader* reader = this->reader(modules_, status);
      if (!reader) return;
      auto r = reader->list();
      if (!r) return fail(r.error());
      status.walk = walk_end_name(r->walk.end);
      count(status, "row_errors", r->row_errors);
      count(status, "user_walk_errors", r->user_walk_errors);
      status.rows = r->rows.size();
      frame.modules = std::move(*r);
      break;
    }
    case Feature::kmsg: {
      KmsgReader* reader = this->reader(kmsg_, status);
      if (!reader) return;
      auto r = reader->read();
      if (!r) return fail(r.error());
      // A record a writer is still busy with, or whose text the ring already
      // overwrote, is the log working as designed; torn or unreadable ones are ours.
      count_skipped(status, "in_flight", r->in_flight);
      count_skipped(status, "lost", r->lost);
      count(status, "torn", r->torn);
      count(status, "unreadable", r->unreadable);
      status.rows = r->records.size();
      frame.kmsg = std::move(*r);
      break;
    }
    case Feature::interfaces: {
      InterfaceReader* reader = this->reader(interfaces_, status);
      if (!reader) return;
      auto r = reader->list();
      if (!r) return fail(r.error());
      status.walk = walk_end_name(r->walk.end);
      count(status, "row_errors", r->row_errors);
      count(status, "address_errors", r->address_errors);
      count(status, "stats_errors", r->stats_errors);
      count_skipped(status, "stats_unsupported", r->stats_unsupported);
      status.rows = r->rows.size();
      frame.interfaces = std::move(*r);
      break;
    }
    case Feature::open_files: {
      OpenFileReader* reader = this->reader(open_files_, status);
      if (!reader) return;
      auto r = reader->list({}, shared_tasks(options, frame));
      if (!r) return fail(r.error());
      status.walk = walk_end_name(r->walk.end);
      count(status, "task_errors", r->task_errors);
      count(status, "row_errors", r->row_errors);
      count(status, "truncated_tables", r->truncated_tables);
      status.rows = r->rows.size();
      frame.open_files = std::move(*r);
      break;
    }
    case Feature::memory_maps: {
      MemoryMapReader* reader = this->reader(memory_maps_, status);
      if (!reader) return;
      auto r = reader->list({}, shared_tasks(options, frame));
      if (!r) return fail(r.error());
      status.walk = walk_end_name(r->walk.end);
      count(status, "task_errors", r->task_errors);
      count(status, "vma_walk_errors", r->vma_walk_errors);
      count(status, "row_errors", r->row_errors);
      count(status, "page_errors", r->page_errors);
      status.rows = r->rows.size();
      frame.memory_maps = std::move(*r);
      break;
    }
    case Feature::sockets: {
      SocketReader* reader = this->reader(sockets_, status);
      if (!reader) return;
      auto r = reader->list({}, shared_tasks(options, frame));
      if (!r) return fail(r.error());
      // Four hash tables, not one list: the walk is the first table that broke.
      status.walk = "complete";
      for (const HashWalk* w : {&r->tcp_listen, &r->tcp_established, &r->udp, &r->unix_table}) {
        if (!w->read)
          status.walk = "bad_pointer";
        else if (w->broken_chains && status.walk == "complete")
          status.walk = walk_end_name(w->first_error);
      }
      count(status, "broken_chains",
            r->tcp_listen.broken_chains + r->tcp_established.broken_chains + r->udp.broken_chains +
                r->unix_table.broken_chains);
      count(status, "row_errors", r->row_errors);
      count(status, "inode_errors", r->inode_errors);
      count(status, "owner_errors", r->owner_errors + (r->owners_read ? 0 : 1));
      status.rows = r->rows.size();
      frame.sockets = std::move(*r);
      break;
    }
  }
  status.ok = true;
}

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
  tasks_.reset();
  // In the canonical order whatever the caller's: processes come before the
  // features that share its task list.
  for (Feature feature : all_features()) {
    if (std::find(options.features.begin(), options.features.end(), feature) ==
        options.features.end())
      continue;
    FeatureStatus& status = meta.features[feature];
    const uint64_t t0 = steady_ns();
    crawl_feature(feature, options, frame, status);
    status.duration_ns = steady_ns() - t0;
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
