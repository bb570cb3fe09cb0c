// System.map (or /proc/kallsyms text): a kernel's symbols as a file states them,
// one profile source among others (link-time addresses, shifted by KASLR on use).
#pragma once

#include <string>
#include <string_view>

#include "kernel/symbols.h"
#include "util/result.h"

namespace nfm {

// Parses System.map / /proc/kallsyms text: "ffffffff81000000 T _text" (an optional
// trailing "\t[module]" is ignored). Debian's image packages ship a one-line stub
// pointing to the -dbg package: that is Errc::not_found with the reason.
Result<SymbolTable> parse_system_map(std::string_view text);
Result<SymbolTable> load_system_map(const std::string& path);
// The inverse: "ffffffff81000000 T _text" lines, in address order.
std::string format_system_map(const SymbolTable& table);

}  // namespace nfm
