#include "kernel/symbols.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace nfm {

namespace {
constexpr uint64_t kKernelImageBase = 0xffffffff80000000ull;  // __START_KERNEL_map
}

SymbolTable::SymbolTable(std::vector<Symbol> symbols) : symbols_(std::move(symbols)) {
  auto by_address = [](const Symbol& a, const Symbol& b) { return a.address < b.address; };
  // kallsyms and System.map come sorted already.
  if (!std::is_sorted(symbols_.begin(), symbols_.end(), by_address)) {
    std::stable_sort(symbols_.begin(), symbols_.end(), by_address);
  }
  index();
}

void SymbolTable::index() {
  by_name_.clear();
  by_name_.reserve(symbols_.size());
  for (uint32_t i = 0; i < symbols_.size(); ++i) {
    auto [it, inserted] = by_name_.emplace(symbols_[i].name, i);
    if (!inserted && !symbols_[it->second].is_global() && symbols_[i].is_global()) it->second = i;
  }
}

const Symbol* SymbolTable::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &symbols_[it->second];
}

Result<uint64_t> SymbolTable::lookup(std::string_view name) const {
  if (const Symbol* s = find(name)) return s->address;
  return make_error(Errc::not_found, fmt::format("no symbol '{}'", name));
}

std::optional<SymbolTable::Nearest> SymbolTable::nearest(uint64_t addr) const {
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), addr,
                             [](uint64_t a, const Symbol& s) { return a < s.address; });
  if (it == symbols_.begin()) return std::nullopt;
  --it;
  return Nearest{&*it, addr - it->address};
}

std::string SymbolTable::symbolize(uint64_t addr) const {
  auto n = nearest(addr);
  if (!n) return fmt::format("{:#x}", addr);
  if (n->offset == 0) return n->symbol->name;
  return fmt::format("{}+{:#x}", n->symbol->name, n->offset);
}

SymbolTable SymbolTable::shifted(int64_t delta) const {
  std::vector<Symbol> out = symbols_;
  for (Symbol& s : out) {
    if (s.address >= kKernelImageBase) s.address += static_cast<uint64_t>(delta);
  }
  return SymbolTable(std::move(out));
}

Result<SymbolTable> parse_system_map(std::string_view text) {
  std::vector<Symbol> syms;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;

    // Debian: "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package"
    if (line.find("The real System.map is in") != std::string_view::npos) {
      return make_error(Errc::not_found,
                        fmt::format("this System.map is a placeholder (\"{}\"); use the -dbg "
                                    "package's System.map or decode kallsyms from the guest",
                                    line.substr(line.find("The real"))));
    }
    Symbol s;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), s.address, 16);
    size_t pos = p - line.data();
    if (ec != std::errc() || pos + 3 > line.size() || line[pos] != ' ' || line[pos + 2] != ' ') {
      return make_error(
          Errc::bad_format,
          fmt::format("System.map line {}: expected \"<hex> <type> <name>\", got \"{}\"", line_no,
                      line.substr(0, 80)));
    }
    s.type = line[pos + 1];
    std::string_view name = line.substr(pos + 3);
    name = name.substr(0, name.find_first_of("\t "));  // drop "\t[module]"
    if (name.empty()) {
      return make_error(Errc::bad_format, fmt::format("System.map line {}: empty name", line_no));
    }
    s.name = std::string(name);
    syms.push_back(std::move(s));
  }
  if (syms.empty()) return make_error(Errc::bad_format, "System.map holds no symbols");
  return SymbolTable(std::move(syms));
}

Result<SymbolTable> load_system_map(const std::string& path) {
  std::ifstream f(path);
  if (!f) return make_error(Errc::not_found, fmt::format("cannot open {}", path));
  std::stringstream ss;
  ss << f.rdbuf();
  auto r = parse_system_map(ss.str());
  if (!r) return Error{r.error().code, path + ": " + r.error().message, {}};
  return r;
}

}  // namespace nfm
