// `modules`' section of a frame: loaded kernel modules as the guest's /proc/modules
// shows them. Row types and columns only: no kernel model here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/walk_result.h"
#include "schema/fields.h"

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
  static constexpr std::string_view kFeature = "modules";
  std::vector<ModuleRow> rows;  // in list order (newest first, like /proc/modules)
  WalkResult walk;              // the `modules` list walk
  uint64_t row_errors = 0;      // modules skipped because a read failed
  uint64_t user_walk_errors = 0;
  // Names with no NUL in MODULE_NAME_LEN bytes (the kernel always ends them): shown
  // cut at MODULE_NAME_LEN - 1, as the kernel would never print them.
  uint64_t name_errors = 0;
};

const schema::Fields<ModuleRow>& module_fields();

}  // namespace nfm
