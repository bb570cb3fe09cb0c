#include "kernel/symbols.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

namespace nfm {

namespace {
constexpr uint64_t kKernelImageBase = 0xffffffff80000000ull;  // __START_KERNEL_map
}

struct SymbolTable::Data : Storage {
  // Set when the table built its own arrays (Storage's spans view these).
  std::vector<Entry> own_entries;
  std::string own_names;
  std::vector<uint32_t> own_by_name;
};

SymbolTable::SymbolTable(std::vector<Symbol> symbols) {
  auto by_address = [](const Symbol& a, const Symbol& b) { return a.address < b.address; };
  // kallsyms and System.map come sorted already.
  if (!std::is_sorted(symbols.begin(), symbols.end(), by_address))
    std::stable_sort(symbols.begin(), symbols.end(), by_address);
  auto d = std::make_shared<Data>();
  size_t name_bytes = 0;
  for (const Symbol& sym : symbols) name_bytes += std::min<size_t>(sym.name.size(), 0xffff);
  d->own_names.reserve(name_bytes);
  d->own_entries.reserve(symbols.size());
  for (const Symbol& sym : symbols) {
    const auto length = static_cast<uint16_t>(std::min<size_t>(sym.name.size(), 0xffff));
    d->own_entries.push_back(
        {sym.address, static_cast<uint32_t>(d->own_names.size()), length, sym.type, 0});
    d->own_names.append(sym.name, 0, length);
  }
  d->own_by_name.resize(symbols.size());
  for (uint32_t i = 0; i < d->own_by_name.size(); ++i) d->own_by_name[i] = i;
  const std::string_view names = d->own_names;
  const auto& entries = d->own_entries;
  auto name_of = [&](uint32_t i) {
    return names.substr(entries[i].name_offset, entries[i].name_length);
  };
  auto global = [&](uint32_t i) { return entries[i].type >= 'A' && entries[i].type <= 'Z'; };
  // Equal names: globals first; stable, so then address order. lookup() takes the first.
  std::stable_sort(d->own_by_name.begin(), d->own_by_name.end(), [&](uint32_t a, uint32_t b) {
    const int c = name_of(a).compare(name_of(b));
    if (c != 0) return c < 0;
    return global(a) && !global(b);
  });
  d->entries = d->own_entries;
  d->names = d->own_names;
  d->by_name = d->own_by_name;
  data_ = std::move(d);
}

Result<SymbolTable> SymbolTable::from_storage(Storage storage) {
  const size_t n = storage.entries.size();
  if (storage.by_name.size() != n)
    return make_error(Errc::bad_format, fmt::format("symbol index has {} entries for {} symbols",
                                                    storage.by_name.size(), n));
  if (n > std::numeric_limits<uint32_t>::max())
    return make_error(Errc::bad_format, "too many symbols");
  uint64_t previous = 0;
  for (const Entry& e : storage.entries) {
    if (uint64_t{e.name_offset} + e.name_length > storage.names.size())
      return make_error(Errc::bad_format, "a symbol name lies outside the name block");
    if (e.address < previous) return make_error(Errc::bad_format, "symbols out of address order");
    previous = e.address;
  }
  for (uint32_t i : storage.by_name)
    if (i >= n) return make_error(Errc::bad_format, "symbol index out of range");
  // The name order itself is not re-checked (a checksum guards the file): a wrong
  // order can only make a lookup miss, never read out of bounds.
  auto d = std::make_shared<Data>();
  static_cast<Storage&>(*d) = std::move(storage);
  SymbolTable table;
  table.data_ = std::move(d);
  return table;
}

const SymbolTable::Storage& SymbolTable::storage() const {
  static const Storage kEmpty;
  return data_ ? *data_ : kEmpty;
}

size_t SymbolTable::size() const {
  return data_ ? data_->entries.size() : 0;
}

uint64_t SymbolTable::relocated(uint64_t stored) const {
  return stored >= kKernelImageBase ? stored + static_cast<uint64_t>(delta_) : stored;
}

SymbolRef SymbolTable::ref(uint32_t i) const {
  const Entry& e = data_->entries[i];
  return {relocated(e.address), e.type, data_->names.substr(e.name_offset, e.name_length)};
}

SymbolRef SymbolTable::at(size_t i) const {
  return ref(static_cast<uint32_t>(i));
}

std::optional<SymbolRef> SymbolTable::find(std::string_view name) const {
  if (!data_) return std::nullopt;
  const auto& d = *data_;
  auto it = std::lower_bound(
      d.by_name.begin(), d.by_name.end(), name, [&](uint32_t i, std::string_view key) {
        return d.names.substr(d.entries[i].name_offset, d.entries[i].name_length) < key;
      });
  if (it == d.by_name.end()) return std::nullopt;
  SymbolRef r = ref(*it);
  if (r.name != name) return std::nullopt;
  return r;
}

Result<uint64_t> SymbolTable::lookup(std::string_view name) const {
  if (auto s = find(name)) return s->address;
  return make_error(Errc::not_found, fmt::format("no symbol '{}'", name));
}

namespace {
// Index of the first entry whose relocated address is > addr. Relocation moves the
// kernel-image block as a whole and keeps it above everything else, so the order
// of stored addresses is the order of relocated ones.
size_t upper_index(std::span<const SymbolTable::Entry> entries, uint64_t addr, int64_t delta) {
  uint64_t stored = addr;
  if (addr >= kKernelImageBase) {
    const uint64_t d = static_cast<uint64_t>(delta);
    if (delta < 0 && addr > std::numeric_limits<uint64_t>::max() + delta)
      stored = std::numeric_limits<uint64_t>::max();
    else
      stored = addr - d;
    // Below the moved image: only non-image symbols can be <= addr.
    if (stored < kKernelImageBase) stored = kKernelImageBase - 1;
  }
  auto it = std::upper_bound(entries.begin(), entries.end(), stored,
                             [](uint64_t a, const SymbolTable::Entry& e) { return a < e.address; });
  return static_cast<size_t>(it - entries.begin());
}
}  // namespace

std::optional<SymbolTable::Nearest> SymbolTable::nearest(uint64_t addr) const {
  if (!data_) return std::nullopt;
  const size_t i = upper_index(data_->entries, addr, delta_);
  if (i == 0) return std::nullopt;
  SymbolRef r = ref(static_cast<uint32_t>(i - 1));
  return Nearest{r, addr - r.address};
}

std::vector<SymbolRef> SymbolTable::all_at(uint64_t addr, size_t max) const {
  std::vector<SymbolRef> out;
  if (!data_) return out;
  for (size_t i = upper_index(data_->entries, addr, delta_); i > 0 && out.size() < max; --i) {
    SymbolRef r = ref(static_cast<uint32_t>(i - 1));
    if (r.address != addr) break;
    out.push_back(r);
  }
  return out;
}

std::optional<SymbolRef> SymbolTable::next_after(uint64_t addr) const {
  if (!data_) return std::nullopt;
  const size_t i = upper_index(data_->entries, addr, delta_);
  if (i >= data_->entries.size()) return std::nullopt;
  return ref(static_cast<uint32_t>(i));
}

std::string SymbolTable::symbolize(uint64_t addr) const {
  auto n = nearest(addr);
  if (!n) return fmt::format("{:#x}", addr);
  if (n->offset == 0) return std::string(n->symbol.name);
  return fmt::format("{}+{:#x}", n->symbol.name, n->offset);
}

SymbolTable SymbolTable::shifted(int64_t delta) const {
  SymbolTable out = *this;
  out.delta_ += delta;
  return out;
}

}  // namespace nfm
