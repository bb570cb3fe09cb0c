// Volatility 3 symbol tables (ISF: Intermediate Symbol Format JSON, plain or .xz):
// read into the same profile every other source gives (symbols + BTF types, via
// kernel/profile/btf_builder.h), and written from any profile nfm has, so an ISF made by
// nfm from a guest's own BTF loads back into identical layouts.
//
// Keys used: base_types, user_types (struct/union fields with byte offsets,
// bitfields, anonymous members), enums, symbols (address; linux_banner's
// constant_data names the kernel) and metadata (format, producer).
#pragma once

#include <span>
#include <string>

#include "kernel/btf_types.h"
#include "kernel/symbols.h"
#include "util/result.h"

namespace nfm {

struct IsfProfile {
  SymbolTable symbols;  // as the file states them (link-time addresses)
  Types types;
  std::string banner;  // from linux_banner's constant_data, when present
};

// Parses ISF JSON bytes (xz-compressed or not, detected from the bytes).
Result<IsfProfile> parse_isf(std::span<const uint8_t> bytes);
Result<IsfProfile> load_isf(const std::string& path);

// Writes `types` and `symbols` (link-time addresses) as ISF; `path` ending in
// ".xz" is compressed. Written to a temporary file and renamed into place.
Result<void> write_isf(const std::string& path, const Types& types, const SymbolTable& symbols,
                       const std::string& banner, const std::string& producer_note);

}  // namespace nfm
