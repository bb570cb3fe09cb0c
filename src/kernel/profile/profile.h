// A kernel's profile: its symbols and types, and where they came from. Every
// source is behind load_profile(): the guest's own kallsyms and BTF (zero-config),
// files (System.map, BTF, vmlinux/vmlinuz, a kernel directory, a DWARF vmlinux, a
// Volatility ISF) and the compiled-profile cache (kernel/profile/profile_cache.h).
// Whatever the source, the profile is checked against the located kernel before it
// is returned: a profile from another build is refused with both kernels named.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/x86_64_paging.h"
#include "kernel/btf_types.h"
#include "kernel/locate.h"
#include "kernel/symbols.h"
#include "util/result.h"

namespace nfm {

// Where symbols and types come from. Empty = from the guest's own memory.
struct ProfileOptions {
  std::string system_map;  // System.map or /proc/kallsyms text
  std::string btf;         // raw BTF (/sys/kernel/btf/vmlinux) or an ELF with .BTF
  std::string vmlinux;     // vmlinux ELF or a vmlinuz: .BTF + its embedded kallsyms
  std::string kernel_dir;  // a directory holding vmlinuz-* (and maybe System.map-*)
  std::string dwarf;       // a DWARF vmlinux (linux-image-*-dbg): .symtab + DWARF types
  std::string isf;         // a Volatility 3 symbol table (.json or .json.xz)
  // Compiled-profile cache (kernel/profile/profile_cache.h): reuse a profile built by
  // an earlier attach to the same build, and keep the one built now.
  bool use_cache = true;
  std::string cache_dir;  // "" = profile_cache_dir()
  // Not a profile option: kernels to pass over while locating (by KernelLocation::dtb),
  // read by Kernel::attach. After a guest reboot the previous kernel's image may still
  // lie intact in RAM next to the new one.
  std::vector<uint64_t> skip_kernels;
};

// The located kernel a profile is loaded for, read through its own page tables.
struct ProfileTarget {
  const KernelLocation& location;
  // Once the profile names page_offset_base, load_profile() turns on this space's
  // direct-map fast path (the later checks read slab objects through it).
  X86_64AddressSpace& space;
  // The hash of this guest's kallsyms and BTF bytes (GuestContent), when an earlier
  // attach to the same unchanged dump file computed it: a cached profile made of
  // such bytes is then checked against it without reading them again.
  std::optional<uint64_t> known_content_hash = std::nullopt;
};

// Where the kernel's memory regions start (CONFIG_RANDOMIZE_MEMORY moves them):
// variables the profile's symbols locate, or the fixed bases of a kernel without them.
struct KernelRegions {
  uint64_t page_offset_base = 0;
  uint64_t vmalloc_base = 0;
  uint64_t vmemmap_base = 0;
};

struct LoadedProfile {
  SymbolTable symbols;  // runtime addresses (KASLR applied)
  Types types;
  std::string banner;  // the guest's linux_banner (first line), which the profile matched
  KernelRegions regions;
  // What was used, in words (frame metadata, `nfm profile info`).
  std::string symbols_source;  // "guest kallsyms (VMCOREINFO)", "System.map FILE", ...
  std::string types_source;    // "guest BTF", "BTF of FILE", "ISF FILE", ...
  std::string cache;           // "warm FILE", "cold; saved to FILE", "off", ...
  // The hash of the guest bytes the profile was made of or checked against (0: it
  // was made of none, e.g. files), for the next attach to the same dump file.
  uint64_t content_hash = 0;
  // The kernel image file the options name (--vmlinux, or the vmlinuz in --kernel),
  // whatever the profile was built from: the text_modified check compares with it.
  std::string image;
};

// Chooses the source (files when options name any, else the guest itself; a cached
// compiled profile first when the cache is on), loads it, checks it against
// `target` (well-known symbols where the guest's own description puts them, the
// banner, VMCOREINFO's member offsets, init_task) and says what it used. A cached
// profile that does not fit is evicted and rebuilt, and the cache string says why.
Result<LoadedProfile> load_profile(const ProfileOptions& options, const ProfileTarget& target);

}  // namespace nfm
