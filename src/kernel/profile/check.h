// load_profile()'s checks of a profile against the located kernel it is for. A
// symbol table or a type graph from another build is caught here, before a
// feature reads anything with it.
#pragma once

#include <string>
#include <string_view>

#include "kernel/profile/profile.h"

namespace nfm {

// Well-known symbols must be where the guest's own description (VMCOREINFO or its
// kallsyms) puts them, and linux_banner must read "Linux version". Returns the
// banner's first line.
Result<std::string> check_symbols(const ProfileTarget& target, const SymbolTable& symbols,
                                  std::string_view symbols_source);

// The region bases the symbols locate (fixed bases without CONFIG_RANDOMIZE_MEMORY);
// enables the target space's direct map. An implausible page_offset_base is an error.
Result<KernelRegions> read_regions(const ProfileTarget& target, const SymbolTable& symbols);

// VMCOREINFO's member offsets must match the types, and init_task must read as the
// swapper (pid 0, a task list that points back at it).
Result<void> check_types(const ProfileTarget& target, const SymbolTable& symbols,
                         const Types& types, std::string_view symbols_source,
                         std::string_view types_source);

}  // namespace nfm
