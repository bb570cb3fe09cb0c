#include "features/modules/modules.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>

#include "kernel/layout.h"

namespace nfm {

namespace {

// kernel/module/internal.h (kernel/module.c before 5.19): refcnt starts at
// MODULE_REF_BASE (1) so that 0 can mean "being unloaded"; /proc shows refcnt - 1.
constexpr int64_t kModuleRefBase = 1;
constexpr size_t kModuleNameLen = 64 - sizeof(unsigned long);  // MODULE_NAME_LEN
constexpr unsigned kMaxTaintBits = 32;  // TAINT_FLAGS_COUNT is 19-20 in 5.10-6.12

using Slot = FieldSlot;

}  // namespace

struct ModuleReader::Layout {
  uint64_t modules = 0;  // the list head
  uint64_t module_size = 0;
  Slot list, name, state, refcnt, source_list, init, exit, taints;
  std::vector<Slot> sizes;  // every size /proc/modules adds up
  Slot base;                // core text base
  // struct module_use: one dependency edge; a module's source_list holds the
  // modules that use it.
  uint64_t use_source_list = 0, use_source = 0;
  int64_t state_coming = 0, state_going = 0, state_unformed = 0;
  // struct taint_flag (taint_flags[]): letter per taint bit.
  uint64_t taint_flags = 0, taint_flag_size = 0;
  Slot taint_c_true, taint_module;
};

std::string proc_modules_line(const ModuleRow& row) {
  std::string users;
  for (const std::string& u : row.used_by) users += u + ",";
  if (row.permanent) users += "[permanent],";
  if (users.empty()) users = "-";
  std::string line = row.refcount < 0
                         ? fmt::format("{} {} - -", row.name, row.size)
                         : fmt::format("{} {} {} {}", row.name, row.size, row.refcount, users);
  line += fmt::format(" {} 0x{:016x}", row.state, row.base);
  if (!row.taints.empty()) {
    // module_flags(): "(letters)" plus - or + for unloading/loading modules.
    const char* mark = row.state == "Unloading" ? "-" : row.state == "Loading" ? "+" : "";
    line += fmt::format(" ({}{})", row.taints, mark);
  }
  return line;
}

Result<ModuleReader> ModuleReader::create(Kernel& kernel) {
  const Types& t = kernel.types();
  auto layout = std::make_shared<Layout>();
  Layout& l = *layout;
  auto slot = [&](const char* type, const std::string& path) {
    return optional_slot(t, type, path);
  };
  auto require = [&](const char* type, const std::string& path) {
    return required_slot(t, type, path);
  };
  NFM_ASSIGN(l.modules, kernel.symbol("modules"));
  NFM_ASSIGN(l.module_size, t.size_of("module"));
  NFM_ASSIGN(l.list, require("module", "list"));
  NFM_ASSIGN(l.name, require("module", "name"));
  NFM_ASSIGN(l.state, require("module", "state"));
  NFM_ASSIGN(l.taints, require("module", "taints"));
  NFM_ASSIGN(l.init, require("module", "init"));
  // refcnt, source_list and exit exist only with CONFIG_MODULE_UNLOAD.
  l.refcnt = slot("module", "refcnt");
  l.source_list = slot("module", "source_list");
  l.exit = slot("module", "exit");
  if (l.source_list.present) {
    NFM_ASSIGN(Field sl, t.member("module_use", "source_list"));
    NFM_ASSIGN(Field src, t.member("module_use", "source"));
    l.use_source_list = sl.offset;
    l.use_source = src.offset;
  }

  // 6.4 (ac3b43283923 "module: replace module_layout with module_memory")
  // split the layouts into mem[MOD_MEM_NUM_TYPES]; /proc sums every type
  // (init types are zeroed once the module is live).
  if (auto mem = t.member("module", "mem")) {
    NFM_ASSIGN(ArrayInfo types, t.array(mem->type));
    for (uint32_t i = 0; i < types.count; ++i) {
      NFM_ASSIGN(Slot s, require("module", fmt::format("mem[{}].size", i)));
      l.sizes.push_back(s);
    }
    NFM_ASSIGN(int64_t text, t.enum_value("mod_mem_type", "MOD_TEXT"));
    NFM_ASSIGN(l.base, require("module", fmt::format("mem[{}].base", text)));
  } else {
    // Before: init_layout.size + core_layout.size, plus data_layout.size where
    // CONFIG_ARCH_WANTS_MODULES_DATA_IN_VMALLOC gave it one (6.0-6.3, not x86).
    for (const char* p : {"core_layout.size", "init_layout.size"}) {
      NFM_ASSIGN(Slot s, require("module", p));
      l.sizes.push_back(s);
    }
    if (Slot s = slot("module", "data_layout.size"); s.present) l.sizes.push_back(s);
    NFM_ASSIGN(l.base, require("module", "core_layout.base"));
  }

  NFM_ASSIGN(l.state_coming, t.enum_value("module_state", "MODULE_STATE_COMING"));
  NFM_ASSIGN(l.state_going, t.enum_value("module_state", "MODULE_STATE_GOING"));
  NFM_ASSIGN(l.state_unformed, t.enum_value("module_state", "MODULE_STATE_UNFORMED"));

  // Taint letters come from the guest's own table; without it, none are shown.
  if (auto flags = kernel.symbol("taint_flags"); flags && t.size_of("taint_flag")) {
    l.taint_flags = *flags;
    l.taint_flag_size = *t.size_of("taint_flag");
    l.taint_c_true = slot("taint_flag", "c_true");
    l.taint_module = slot("taint_flag", "module");
  }
  return ModuleReader(kernel, std::move(layout));
}

bool ModuleReader::read_module(uint64_t module, ModuleRow& row, ModuleList& out,
                               const ModuleOptions& options) {
  const Layout& l = *layout_;
  buffer_.resize(l.module_size);
  if (!kernel_->read(module, buffer_.data(), buffer_.size())) return false;
  row.module = module;
  const char* name = reinterpret_cast<const char*>(buffer_.data() + l.name.offset);
  const size_t room = std::min<uint64_t>(l.name.size, kModuleNameLen);
  row.name.assign(name, strnlen(name, room));
  if (row.name.size() == room) {  // no terminator: not a name the kernel wrote
    ++out.name_errors;
    row.name.resize(room - 1);
  }

  const auto state = static_cast<int64_t>(static_cast<int32_t>(load_unsigned(buffer_, l.state)));
  row.state = state == l.state_going ? "Unloading" : state == l.state_coming ? "Loading" : "Live";
  row.size = 0;
  for (const Slot& s : l.sizes) row.size += static_cast<uint32_t>(load_unsigned(buffer_, s));
  row.size = static_cast<uint32_t>(row.size);  // /proc adds them up in an int, prints %u
  row.base = load_unsigned(buffer_, l.base);
  row.refcount = l.refcnt.present
                     ? static_cast<int32_t>(load_unsigned(buffer_, l.refcnt)) - kModuleRefBase
                     : -1;
  row.permanent =
      l.exit.present && load_unsigned(buffer_, l.init) != 0 && load_unsigned(buffer_, l.exit) == 0;

  if (l.source_list.present) {
    auto walk = walk_list(
        kernel_->space(), module + l.source_list.offset, options.max_users, [&](uint64_t node) {
          auto source = kernel_->read_pointer(node - l.use_source_list + l.use_source);
          if (!source) return true;
          auto user = kernel_->read_string(*source + l.name.offset, kModuleNameLen);
          if (user) row.used_by.push_back(*user);
          return true;
        });
    if (!walk.ok()) ++out.user_walk_errors;
  }

  if (const uint64_t taints = load_unsigned(buffer_, l.taints); taints && l.taint_flags) {
    for (unsigned bit = 0; bit < kMaxTaintBits; ++bit) {
      if (!(taints & (uint64_t{1} << bit))) continue;
      const uint64_t entry = l.taint_flags + bit * l.taint_flag_size;
      auto letter = kernel_->read_value<char>(entry + l.taint_c_true.offset);
      auto is_module = kernel_->read_value<uint8_t>(entry + l.taint_module.offset);
      if (letter && is_module && *is_module) row.taints += *letter;
    }
  }
  return true;
}

Result<ModuleList> ModuleReader::list(const ModuleOptions& options) {
  const Layout& l = *layout_;
  ModuleList out;
  std::vector<uint64_t> modules;
  out.walk = walk_list(kernel_->space(), l.modules, options.max_modules, [&](uint64_t node) {
    modules.push_back(node - l.list.offset);
    return true;
  });
  for (uint64_t module : modules) {
    ModuleRow row;
    if (!read_module(module, row, out, options)) {
      ++out.row_errors;
      continue;
    }
    // /proc/modules skips modules still being set up (m_show()).
    if (static_cast<int32_t>(load_unsigned(buffer_, l.state)) == l.state_unformed) continue;
    out.rows.push_back(std::move(row));
  }
  return out;
}

}  // namespace nfm
