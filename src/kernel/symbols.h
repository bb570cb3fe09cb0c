// Kernel symbols: name -> address, and address -> nearest symbol for symbolizing.
// Built from System.map (or /proc/kallsyms text) or decoded from the kernel's own
// kallsyms tables (kernel/kallsyms.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/result.h"

namespace nfm {

struct Symbol {
  uint64_t address = 0;
  char type = '?';  // nm type letter: T/t text, D/d data, B/b bss, R/r rodata, A absolute, ...
  std::string name;

  bool is_global() const { return type >= 'A' && type <= 'Z'; }
};

class SymbolTable {
 public:
  SymbolTable() = default;
  // Sorts by address (stable: equal addresses keep their input order).
  explicit SymbolTable(std::vector<Symbol> symbols);
  // The name index points into symbols_: copies rebuild it, moves keep it (a
  // moved vector keeps its buffer, so the strings do not move).
  SymbolTable(const SymbolTable& other) : symbols_(other.symbols_) { index(); }
  SymbolTable& operator=(const SymbolTable& other) {
    if (this != &other) {
      symbols_ = other.symbols_;
      index();
    }
    return *this;
  }
  SymbolTable(SymbolTable&&) noexcept = default;
  SymbolTable& operator=(SymbolTable&&) noexcept = default;

  // Address of `name`. C allows the same static name in several files; a global
  // definition wins, else the first one in address order.
  Result<uint64_t> lookup(std::string_view name) const;
  const Symbol* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  struct Nearest {
    const Symbol* symbol = nullptr;
    uint64_t offset = 0;  // addr - symbol->address
  };
  // The symbol with the greatest address <= addr (std::nullopt below the first).
  std::optional<Nearest> nearest(uint64_t addr) const;
  // "func+0x1a" (or hex address if nothing precedes it).
  std::string symbolize(uint64_t addr) const;

  // A copy with every kernel-image address (>= 0xffffffff80000000) moved by
  // `delta`: link-time System.map -> KASLR runtime. Absolute and per-cpu symbols
  // (small addresses) are not relocated, as the kernel's own relocs do not move them.
  SymbolTable shifted(int64_t delta) const;

  size_t size() const { return symbols_.size(); }
  bool empty() const { return symbols_.empty(); }
  const std::vector<Symbol>& symbols() const { return symbols_; }  // by address

 private:
  void index();
  std::vector<Symbol> symbols_;
  std::unordered_map<std::string_view, uint32_t> by_name_;  // views into symbols_
};

// Parses System.map / /proc/kallsyms text: "ffffffff81000000 T _text" (an optional
// trailing "\t[module]" is ignored). Debian's image packages ship a one-line stub
// pointing to the -dbg package: that is Errc::not_found with the reason.
Result<SymbolTable> parse_system_map(std::string_view text);
Result<SymbolTable> load_system_map(const std::string& path);

}  // namespace nfm
