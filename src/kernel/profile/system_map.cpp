#include "kernel/profile/system_map.h"

#include <fmt/format.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace nfm {

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

std::string format_system_map(const SymbolTable& table) {
  std::string out;
  out.reserve(table.size() * 40);
  for (size_t i = 0; i < table.size(); ++i) {
    const SymbolRef s = table.at(i);
    fmt::format_to(std::back_inserter(out), "{:016x} {} {}\n", s.address, s.type, s.name);
  }
  return out;
}

}  // namespace nfm
