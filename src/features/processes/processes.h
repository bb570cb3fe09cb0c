// Processes and threads: the section declared in rows.h, read from the task list.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "features/processes/rows.h"
#include "kernel/kernel.h"
#include "kernel/paths.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

class CrawlContext;

// Resolves the task layout once per kernel (by field names, newest layout
// first); list() then runs as often as wanted.
class ProcessReader {
 public:
  static Result<ProcessReader> create(Kernel& kernel);
  Result<ProcessList> list(const ProcessOptions& options = {});

  struct Layout;

 private:
  ProcessReader(Kernel& kernel, std::shared_ptr<const Layout> layout)
      : kernel_(&kernel), layout_(std::move(layout)) {}
  struct TaskTimes {
    uint64_t utime = 0, stime = 0, runtime = 0;
  };
  struct Crawl;
  bool read_task(uint64_t task, ProcessRow& row, Crawl& crawl, TaskTimes& times);
  Result<TaskTimes> read_times(uint64_t task);
  void read_memory(uint64_t mm, ProcessRow& row, Crawl& crawl);
  std::string read_cmdline(std::span<const uint8_t> mm, Crawl& crawl);
  void prefetch(const std::vector<uint64_t>& tasks);
  std::string kernel_thread_name(const std::string& comm, uint32_t flags, uint64_t kthread);
  int64_t percpu_sum_s32(uint64_t counters_field);
  void read_executables(ProcessList& out);

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  std::vector<uint8_t> buffer_;
  std::optional<Result<PathResolver>> paths_;  // for exe, made on first use
};

// The processes a per-process feature visits (open files, memory maps, socket
// owners): the caller's list when it has crawled this moment's already (a frame
// walks the task list once for all of them), else a walk of its own that reads
// only what those features use (no command lines, no executables).
class ProcessSet {
 public:
  static Result<ProcessSet> of(ProcessReader& reader, const ProcessList* shared, size_t max_tasks);
  const ProcessList& list() const { return shared_ ? *shared_ : own_; }
  // The rows /proc has (not the idle task), or only process `pid`'s.
  std::vector<const ProcessRow*> in_proc(std::optional<int32_t> pid = std::nullopt) const;

 private:
  const ProcessList* shared_ = nullptr;
  ProcessList own_;
};

// The task list that the per-process features of one crawl share (open files,
// memory maps, socket owners): the processes section's when the frame has one
// with a row per process, else one walked for them without command lines.
// nullptr when that walk failed: each then walks on its own and says why.
const ProcessList* shared_tasks(CrawlContext& ctx);

}  // namespace nfm
