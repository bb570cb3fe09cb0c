// Loaded kernel modules: the `modules` list, as the guest's /proc/modules shows it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "features/modules/rows.h"
#include "kernel/kernel.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

// /proc/modules text for one row: "name size refcount users state 0xbase [(taints)]".
std::string proc_modules_line(const ModuleRow& row);

class ModuleReader {
 public:
  static Result<ModuleReader> create(Kernel& kernel);
  Result<ModuleList> list(const ModuleOptions& options = {});

  struct Layout;

 private:
  ModuleReader(Kernel& kernel, std::shared_ptr<const Layout> layout)
      : kernel_(&kernel), layout_(std::move(layout)) {}
  bool read_module(uint64_t module, ModuleRow& row, ModuleList& out, const ModuleOptions& options);

  Kernel* kernel_;
  std::shared_ptr<const Layout> layout_;
  std::vector<uint8_t> buffer_;
};

}  // namespace nfm
