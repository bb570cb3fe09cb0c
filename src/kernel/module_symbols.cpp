#include "kernel/module_symbols.h"

#include <fmt/format.h>

#include <cstring>
#include <optional>
#include <vector>

#include "kernel/walk.h"

namespace nfm {

namespace {

constexpr size_t kMaxModules = 1 << 14;
constexpr uint64_t kMaxModuleSymbols = 1 << 17;
constexpr size_t kMaxSymbolName = 512;  // KSYM_NAME_LEN

// The symbol of a listed module at `address` (exact), or the nearest one at or below
// it, at most `max_offset` before it.
Result<ModuleSymbol> find_module_symbol(Kernel& kernel, uint64_t address, uint64_t max_offset) {
  const Types& t = kernel.types();
  NFM_ASSIGN(uint64_t modules, kernel.symbol("modules"));
  NFM_ASSIGN(Field list, t.member("module", "list"));
  NFM_ASSIGN(Field name, t.member("module", "name"));
  // module->kallsyms points at core_kallsyms once the module is live (the init
  // copy is dropped by do_init_module()); both are struct mod_kallsyms.
  NFM_ASSIGN(Field kallsyms, t.member("module", "kallsyms"));
  NFM_ASSIGN(Field symtab, t.member("mod_kallsyms", "symtab"));
  NFM_ASSIGN(Field num_symtab, t.member("mod_kallsyms", "num_symtab"));
  NFM_ASSIGN(Field strtab, t.member("mod_kallsyms", "strtab"));
  // Elf64_Sym is the ELF ABI; BTF describes it as struct elf64_sym.
  NFM_ASSIGN(uint64_t sym_size, t.size_of("elf64_sym"));
  NFM_ASSIGN(Field st_name, t.member("elf64_sym", "st_name"));
  NFM_ASSIGN(Field st_value, t.member("elf64_sym", "st_value"));

  std::vector<uint64_t> found;
  auto walk = walk_list(kernel.space(), modules, kMaxModules, [&](uint64_t node) {
    found.push_back(node - list.offset);
    return true;
  });
  std::vector<uint8_t> table;
  struct Best {
    uint64_t module = 0, value = 0, strings = 0;
    uint32_t name_off = 0;
  };
  std::optional<Best> best;
  for (uint64_t module : found) {
    auto ks = kernel.read_pointer(module + kallsyms.offset);
    if (!ks || !*ks) continue;
    auto syms = kernel.read_pointer(*ks + symtab.offset);
    auto count = kernel.read_value<uint32_t>(*ks + num_symtab.offset);
    auto strings = kernel.read_pointer(*ks + strtab.offset);
    if (!syms || !count || !strings || *count > kMaxModuleSymbols) continue;
    table.resize(*count * sym_size);
    if (!kernel.read(*syms, table.data(), table.size())) continue;
    for (uint64_t i = 0; i < *count; ++i) {
      uint64_t value = 0;
      uint32_t name_off = 0;
      std::memcpy(&value, table.data() + i * sym_size + st_value.offset, sizeof value);
      std::memcpy(&name_off, table.data() + i * sym_size + st_name.offset, sizeof name_off);
      if (name_off == 0 || value > address || address - value > max_offset) continue;
      if (!best || value > best->value) best = Best{module, value, *strings, name_off};
      if (value == address) break;
    }
    if (best && best->value == address) break;
  }
  if (best) {
    NFM_ASSIGN(std::string sym, kernel.read_string(best->strings + best->name_off, kMaxSymbolName));
    NFM_ASSIGN(std::string mod, kernel.read_string(best->module + name.offset, name.size));
    if (best->value != address) sym += fmt::format("+0x{:x}", address - best->value);
    return ModuleSymbol{std::move(mod), std::move(sym)};
  }
  if (!walk.ok())
    return make_error(Errc::fault, fmt::format("module list walk ended early ({}) looking for "
                                               "0x{:x}",
                                               walk_end_name(walk.end), address));
  return make_error(Errc::not_found, fmt::format("no module symbol at 0x{:x}", address));
}

}  // namespace

Result<ModuleSymbol> module_symbol_at(Kernel& kernel, uint64_t address) {
  return find_module_symbol(kernel, address, 0);
}

Result<ModuleSymbol> module_symbol_near(Kernel& kernel, uint64_t address, uint64_t max_offset) {
  return find_module_symbol(kernel, address, max_offset);
}

Result<ModuleSymbol> function_symbol_at(Kernel& kernel, uint64_t address) {
  if (auto near = kernel.symbols().nearest(address); near && near->offset == 0)
    return ModuleSymbol{"", std::string(near->symbol.name)};
  return module_symbol_at(kernel, address);
}

}  // namespace nfm
