// Open files of every process: each task's fd table, as the guest's own
// /proc/PID/fd (readlink) and /proc/PID/fdinfo/N show it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "features/processes/processes.h"
#include "features/open_files/rows.h"
#include "kernel/kernel.h"
#include "kernel/paths.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

class OpenFileReader {
 public:
  static Result<OpenFileReader> create(Kernel& kernel);
  // `tasks`: this crawl's process list when the caller has it (one row per
  // process), else list() walks the tasks itself.
  Result<OpenFileList> list(const OpenFileOptions& options = {},
                            const ProcessList* tasks = nullptr);

  struct Layout;

 private:
  OpenFileReader(Kernel& kernel, PathResolver paths, ProcessReader processes,
                 std::shared_ptr<const Layout> layout)
      : kernel_(&kernel),
        paths_(std::move(paths)),
        processes_(std::move(processes)),
        layout_(std::move(layout)) {}
  void read_task(uint64_t task, int32_t pid, const std::string& comm, OpenFileList& out,
                 const OpenFileOptions& options);

  Kernel* kernel_;
  PathResolver paths_;
  ProcessReader processes_;
  std::shared_ptr<const Layout> layout_;
};

}  // namespace nfm
