// A profile from a DWARF vmlinux (Debian's linux-image-*-dbg ships one under
// /usr/lib/debug/boot): its ELF symbol table for symbols, and its DWARF type
// information converted to BTF (kernel/profile/btf_builder.h), so Types reads it exactly
// as it reads the kernel's own BTF.
#pragma once

#include <string>

#include "kernel/btf_types.h"
#include "kernel/symbols.h"
#include "util/result.h"

namespace nfm {

struct DwarfProfile {
  SymbolTable symbols;  // link-time addresses (.symtab)
  Types types;
  std::string banner;  // linux_banner's bytes in .rodata, when found
};

// True when `path` is an ELF with a .debug_info section (reads the headers only).
bool has_dwarf(const std::string& path);

// Reads symbols and converts the types of every compilation unit. Only what Types
// needs is kept: base types, pointers, arrays, structs and unions (members with bit
// offsets and bitfield widths), enums, typedefs, qualifiers and function
// prototypes (as opaque pointees). Named types are converted once for the whole
// image (first definition wins), as pahole does.
Result<DwarfProfile> load_dwarf_profile(const std::string& path);

// linux_banner of a vmlinux (from its symbols and .rodata, no DWARF read), or "".
std::string dwarf_vmlinux_banner(const std::string& path);

}  // namespace nfm
