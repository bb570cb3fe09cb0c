// Module symbols: the guest's own symbol tables of loaded modules. The vmlinux
// kallsyms know nothing of module code; each module keeps its symbols (static
// functions included, as /proc/kallsyms shows them) in module->kallsyms.
#pragma once

#include <cstdint>
#include <string>

#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

struct ModuleSymbol {
  std::string module;  // "virtio_net"
  std::string name;    // "virtnet_stats"
};

// The module symbol whose value is exactly `address` (e.g. a function pointer
// found in a driver's ops table). Errc::not_found when no module has one.
Result<ModuleSymbol> module_symbol_at(Kernel& kernel, uint64_t address);

// The module symbol at or nearest below `address`, at most `max_offset` before it:
// "name" or "name+0x1c" (what holds a byte inside a module's memory).
Result<ModuleSymbol> module_symbol_near(Kernel& kernel, uint64_t address, uint64_t max_offset);

// The symbol at exactly `address`: vmlinux's first (`module` is ""), then the
// modules'.
Result<ModuleSymbol> function_symbol_at(Kernel& kernel, uint64_t address);

}  // namespace nfm
