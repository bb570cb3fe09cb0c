// syscall_hook: each slot of sys_call_table (and of the ia32 table) points at
// the kernel's own entry point, `__x64_sys_NAME` (`__ia32_[compat_]sys_NAME`), at
// its first byte. Which NAME belongs in which slot the kernel itself recorded at
// boot: with syscall tracing (CONFIG_FTRACE_SYSCALLS) syscalls_metadata[nr] names
// the syscall the slot held then, so a slot redirected later to another
// syscall's entry is seen too. A slot pointing anywhere else, above all into a
// module or outside any module, has been hooked.
#include <fmt/core.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/module_symbols.h"

namespace nfm {
namespace {

constexpr size_t kMaxSlots = 2048;  // x86-64 has ~460; more is not a syscall table

struct Table {
  const char* symbol;                   // "sys_call_table"
  std::vector<std::string_view> entry;  // prefixes of the kernel's entry points
  bool has_metadata;                    // syscalls_metadata describes its slots
};

// The names of the kernel symbols exactly at `address` (aliases share one).
std::vector<std::string> names_at(const SymbolTable& symbols, uint64_t address) {
  std::vector<std::string> out;
  for (const SymbolRef& s : symbols.all_at(address)) out.emplace_back(s.name);
  return out;
}

// The names syscall tracing recorded at boot, by slot ("sys_kill"); "" where none.
std::vector<std::string> boot_names(Kernel& kernel, size_t slots) {
  std::vector<std::string> names(slots);
  auto sym = kernel.symbol("syscalls_metadata");
  auto name_field = kernel.types().member("syscall_metadata", "name");
  if (!sym || !name_field) return names;
  auto array = kernel.read_pointer(*sym);
  if (!array || !*array) return names;
  std::vector<uint64_t> meta(slots);
  if (!kernel.read(*array, meta.data(), meta.size() * 8)) return names;
  for (size_t i = 0; i < slots; ++i) {
    if (!meta[i]) continue;
    auto name_pointer = kernel.read_pointer(meta[i] + name_field->offset);
    if (!name_pointer) continue;
    if (auto name = kernel.read_string(*name_pointer, 64)) names[i] = *name;
  }
  return names;
}

}  // namespace

Result<CheckOutcome> check_syscall_hooks(Kernel& kernel, const IntegrityOptions&,
                                         std::vector<IntegrityFinding>& findings) {
  fresh_reading(kernel);
  const SymbolTable& symbols = kernel.symbols();
  NFM_ASSIGN(uint64_t text_start, kernel.symbol("_stext"));
  NFM_ASSIGN(uint64_t text_end, kernel.symbol("_etext"));
  const Table tables[] = {
      {"sys_call_table", {"__x64_sys_"}, true},
      {"ia32_sys_call_table", {"__ia32_sys_", "__ia32_compat_sys_"}, false},
  };
  CheckOutcome outcome;
  std::vector<std::string> counted;  // "sys_call_table 451 slots (435 named at boot)"
  for (const Table& table : tables) {
    auto address = kernel.symbol(table.symbol);
    if (!address) {
      if (table.has_metadata) return address.error();  // every x86-64 kernel has one
      continue;                                        // no IA32_EMULATION
    }
    // The table's length: up to the next symbol (no size in kallsyms); the
    // alignment padding after the last slot is zeros.
    auto next = symbols.next_after(*address);
    size_t slots = next ? std::min<uint64_t>((next->address - *address) / 8, kMaxSlots) : 0;
    if (slots == 0)
      return make_error(Errc::not_found, fmt::format("{}: no end found", table.symbol));
    std::vector<uint64_t> entries(slots);
    NFM_TRY(kernel.read(*address, entries.data(), entries.size() * 8));
    while (!entries.empty() && entries.back() == 0) entries.pop_back();
    const std::vector<std::string> boot =
        table.has_metadata ? boot_names(kernel, entries.size()) : std::vector<std::string>();
    const size_t named = static_cast<size_t>(
        std::count_if(boot.begin(), boot.end(), [](const std::string& n) { return !n.empty(); }));
    counted.push_back(
        table.has_metadata
            ? fmt::format("{} {} slots ({} named at boot)", table.symbol, entries.size(), named)
            : fmt::format("{} {} slots", table.symbol, entries.size()));
    for (size_t slot = 0; slot < entries.size(); ++slot) {
      const uint64_t target = entries[slot];
      const std::vector<std::string> names = names_at(symbols, target);
      const bool in_text = target >= text_start && target < text_end;
      std::string expected;
      if (slot < boot.size() && boot[slot].starts_with("sys_"))
        expected = std::string(table.entry.front()) + boot[slot].substr(4);
      // One of its names must be an entry point (the expected one, where known).
      bool ok = false;
      for (const std::string& name : names) {
        bool entry_point = name.ends_with("sys_ni_syscall");
        for (std::string_view prefix : table.entry) entry_point |= name.starts_with(prefix);
        ok |= in_text && entry_point && (expected.empty() || name == expected);
      }
      if (ok) continue;
      const std::string name = names.empty() ? std::string() : names.front();
      // Where it points instead: a module's function, or nothing anyone owns.
      std::string owner = "kernel";
      std::string function = name;
      if (!in_text) {
        auto m = module_symbol_at(kernel, target);
        owner = m ? m->module : "";
        function = m ? m->name : "";
      }
      const std::string where =
          owner.empty() ? "memory no listed module owns"
          : owner == "kernel"
              ? fmt::format("kernel {}", function.empty() ? symbols.symbolize(target) : function)
              : fmt::format("{} in module {}", function.empty() ? "code" : function, owner);
      schema::json evidence = {
          {"table", table.symbol},
          {"slot", slot},
          {"address", schema::hex_address(target)},
          {"points_to", function.empty() ? symbols.symbolize(target) : function},
          {"module", owner == "kernel" ? "" : owner}};
      if (!expected.empty()) evidence["expected"] = expected;
      findings.push_back(IntegrityFinding{
          .kind = "syscall_hook",
          .severity = "critical",
          .summary = fmt::format("{}[{}]{} points to {}", table.symbol, slot,
                                 expected.empty() ? "" : " (" + expected + ")", where),
          .evidence = std::move(evidence),
      });
    }
  }
  outcome.detail = join_views(counted);
  return outcome;
}

}  // namespace nfm
