// Kernel symbols: name -> address, and address -> nearest symbol for symbolizing.
// Built from System.map (or /proc/kallsyms text; kernel/profile/system_map.h) or
// decoded from the kernel's own kallsyms tables (kernel/profile/kallsyms.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace nfm {

// A symbol as the readers that build tables produce it (owned name).
struct Symbol {
  uint64_t address = 0;
  char type = '?';  // nm type letter: T/t text, D/d data, B/b bss, R/r rodata, A absolute, ...
  std::string name;
  bool is_global() const { return type >= 'A' && type <= 'Z'; }
};

// A symbol as a table hands it out: the name views the table's storage.
struct SymbolRef {
  uint64_t address = 0;
  char type = '?';
  std::string_view name;
  bool is_global() const { return type >= 'A' && type <= 'Z'; }
};

// Immutable and compact: fixed-size entries sorted by address, one block of names,
// and a by-name index, so a table can live in a mapped profile file and be shared
// (copies and shifted() views cost nothing: many guests of one kernel, each with its
// own KASLR shift, use one table).
class SymbolTable {
 public:
  // 16 bytes; the layout is also the profile cache's on-disk format.
  struct Entry {
    uint64_t address;
    uint32_t name_offset;  // into names
    uint16_t name_length;
    char type;
    char reserved;
  };
  // The raw arrays. `by_name` lists entry indices sorted by name, the entry lookup()
  // prefers (global first, then lowest address) first among equal names. `owner`
  // keeps the memory alive (a mapped file, or the table's own vectors).
  struct Storage {
    std::span<const Entry> entries;
    std::string_view names;
    std::span<const uint32_t> by_name;
    std::shared_ptr<const void> owner;
  };

  SymbolTable() = default;
  // Sorts by address (stable: equal addresses keep their input order) and indexes names.
  explicit SymbolTable(std::vector<Symbol> symbols);
  // Adopts arrays written by storage() (e.g. mapped from a file). Bounds are checked
  // here (every name inside `names`, every index inside `entries`) and address order
  // too, so a corrupt file cannot make lookups read out of bounds.
  static Result<SymbolTable> from_storage(Storage storage);
  const Storage& storage() const;

  // Address of `name`. C allows the same static name in several files; a global
  // definition wins, else the first one in address order.
  Result<uint64_t> lookup(std::string_view name) const;
  std::optional<SymbolRef> find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name).has_value(); }

  struct Nearest {
    SymbolRef symbol;
    uint64_t offset = 0;  // addr - symbol.address
  };
  // The symbol with the greatest address <= addr (std::nullopt below the first).
  std::optional<Nearest> nearest(uint64_t addr) const;
  // Every symbol at exactly `addr`: aliases share an address (__x64_sys_getpid and
  // __ia32_sys_getpid are one function on some kernels). At most `max`.
  std::vector<SymbolRef> all_at(uint64_t addr, size_t max = 16) const;
  // The first symbol with an address > addr (where an object ends, at the latest).
  std::optional<SymbolRef> next_after(uint64_t addr) const;
  // "func+0x1a" (or hex address if nothing precedes it).
  std::string symbolize(uint64_t addr) const;

  // The same table with every kernel-image address (>= 0xffffffff80000000) moved by
  // `delta`: link-time System.map -> KASLR runtime. Absolute and per-cpu symbols
  // (small addresses) are not relocated, as the kernel's own relocs do not move them.
  // Shares the storage.
  SymbolTable shifted(int64_t delta) const;

  size_t size() const;
  bool empty() const { return size() == 0; }
  SymbolRef at(size_t i) const;  // by address, i < size()

 private:
  struct Data;
  uint64_t relocated(uint64_t stored) const;
  SymbolRef ref(uint32_t i) const;
  std::shared_ptr<const Data> data_;
  int64_t delta_ = 0;
};

}  // namespace nfm
