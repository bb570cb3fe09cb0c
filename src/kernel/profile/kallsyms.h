// The kernel's own symbol table (CONFIG_KALLSYMS), read through an AddressSpace:
// guest memory, or a vmlinux image mapped at its link addresses.
//
// Tables (scripts/kallsyms.c, all `.balign 8` on 64-bit):
//   kallsyms_num_syms      u32
//   kallsyms_names         per symbol: length (1 byte, or 2-byte ULEB128 when > 0x7F,
//                          since 6.1, "kallsyms: support "big" kernel symbols"),
//                          then that many token numbers; the expansion's first char
//                          is the nm type letter
//   kallsyms_markers       u32 offset into names of every 256th symbol
//   kallsyms_token_table   256 NUL-terminated token strings
//   kallsyms_token_index   256 u16 offsets into token_table
//   kallsyms_offsets       s32 per symbol (KALLSYMS_BASE_RELATIVE)
//   kallsyms_relative_base u64
//   [kallsyms_seqs_of_names  u8[3] per symbol, 6.2+ and stable backports (Debian 6.1.y)]
// Order: before 6.4: offsets, relative_base, num_syms, names, markers,
// [seqs_of_names,] token_table, token_index. 6.4 ("scripts/kallsyms: change the
// output order") moved offsets, relative_base and seqs_of_names after token_index.
// Verified on Debian 5.10.262 (no seqs), 6.1.192 (seqs before token_table) and
// 6.12.118 (6.4+ order).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "arch/address_space.h"
#include "kernel/profile/vmlinuz.h"
#include "kernel/symbols.h"
#include "util/result.h"

namespace nfm {

// Virtual addresses of the tables (of the variables, not their values).
struct KallsymsTables {
  uint64_t num_syms = 0;
  uint64_t names = 0;
  uint64_t markers = 0;  // optional (0): VMCOREINFO does not give it; only cross-checks
  uint64_t token_table = 0;
  uint64_t token_index = 0;
  uint64_t offsets = 0;
  uint64_t relative_base = 0;
};

// From VMCOREINFO's SYMBOL(kallsyms_*) entries (6.0+: kallsyms_names, _num_syms,
// _token_table, _token_index, _offsets, _relative_base; no markers); `symbol` maps a name to its
// address, e.g.
// [&](auto& n) { return vmcoreinfo.symbol(n); }. nullopt if any required one is
// missing (kernels before 6.0, or !KALLSYMS_BASE_RELATIVE).
std::optional<KallsymsTables> kallsyms_tables_from(
    const std::function<std::optional<uint64_t>(const std::string&)>& symbol);

// The bytes the tables span: from the first table to the end of the last (the
// last is token_index before 6.4, relative_base after). What a cached profile's
// content hash covers, except relative_base itself: KASLR relocates that one value
// at boot, so two boots of one build differ there and nowhere else.
struct KallsymsSpan {
  uint64_t va = 0, size = 0;
  uint64_t relocated_at = 0;  // offset of relative_base in the span
};
KallsymsSpan kallsyms_span(const KallsymsTables& tables);

// Decodes all symbols. Addresses are what the kernel would report (runtime
// addresses when read from a KASLR'd guest, since relative_base is relocated).
Result<SymbolTable> decode_kallsyms(AddressSpace& as, const KallsymsTables& tables);

struct KallsymsLocation {
  KallsymsTables tables;
  uint32_t num_syms = 0;
  bool offsets_after_token_index = false;  // 6.4+ order
};

// Finds the tables by their structure inside [va_start, va_end) (the kernel
// image: _stext.._end), for kernels whose VMCOREINFO has no kallsyms entries
// (< 6.0). Anchored on the token table's "0\0" "1\0" ... "9\0" run (the digits
// are single-character tokens at their own codes 0x30-0x39), as vmlinux-to-elf
// does, then checked table by table. Unmapped pages in the window are skipped.
// Not supported: kernels without KALLSYMS_BASE_RELATIVE (kallsyms_addresses;
// never the x86-64 default).
Result<KallsymsLocation> find_kallsyms(AddressSpace& as, uint64_t va_start, uint64_t va_end);

// Link-time symbols of a vmlinux from its embedded kallsyms: the System.map that
// Debian does not ship (shift by the KASLR offset for a running guest).
Result<SymbolTable> read_vmlinux_kallsyms(const ElfImage& elf);

}  // namespace nfm
