// Loaded kernel modules: the `modules` list, as the guest's /proc/modules shows it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernel/kernel.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

struct ModuleRow {
  std::string name;
  uint64_t size = 0;                 // bytes, as /proc/modules counts them (module_total_size)
  int64_t refcount = 0;              // module_refcount(); -1 without CONFIG_MODULE_UNLOAD ("-")
  std::string state;                 // "Live", "Loading" or "Unloading"
  uint64_t base = 0;                 // core text base (what /proc/modules prints to root)
  std::vector<std::string> used_by;  // modules that depend on this one
  bool permanent = false;            // has an init but no exit: can never be unloaded
  std::string taints;                // module taint letters ("OE"), "" when untainted
  uint64_t module = 0;               // struct module address, for cross-referencing
};

struct ModuleOptions {
  size_t max_modules = 1 << 14;
  size_t max_users = 1 << 12;  // per module: its source_list
};

struct ModuleList {
  std::vector<ModuleRow> rows;  // in list order (newest first, like /proc/modules)
  WalkResult walk;              // the `modules` list walk
  uint64_t row_errors = 0;      // modules skipped because a read failed
  uint64_t user_walk_errors = 0;
};

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
