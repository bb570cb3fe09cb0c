// The kernel image as it lies in memory before the kernel patches itself: the
// vmlinux inside a vmlinuz, relocated to the guest's KASLR shift, and every place
// the kernel may legitimately rewrite its own text at boot or later (alternatives,
// paravirt, jump labels, static calls, ftrace sites, retpoline and return thunks,
// lock prefixes, runtime constants). What the guest's text holds beyond those places
// was written by someone else (the text_modified check).
//
// The sites come from the image, not from guest memory: most of their tables live in
// init sections the kernel frees after boot, and a rootkit could add entries to the
// ones that stay to excuse its own patch.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernel/btf_types.h"
#include "kernel/symbols.h"
#include "util/result.h"

namespace nfm {

// What may rewrite the bytes of a site, and so what they may hold.
enum class PatchSiteKind {
  alternative,             // .altinstructions: CPU-feature dependent code
  paravirt,                // .parainstructions: paravirt calls patched inline
  jump_label,              // __jump_table: a nop, or a jump to the entry's target
  static_call,             // .static_call_sites: a call to the current target
  static_call_trampoline,  // __static_call_text: trampolines rewritten in place
  ftrace,                  // __mcount_loc: a nop, or a call into ftrace
  ftrace_caller,           // ftrace_call/ftrace_regs_call/ftrace_graph_call in ftrace's own code
  retpoline,               // .retpoline_sites: indirect-thunk calls
  return_thunk,            // .return_sites: jumps to the return thunk
  call_depth,              // .call_sites: call-depth tracking thunks
  endbr,                   // .ibt_endbr_seal: ENDBR sealed to a nop
  smp_lock,                // .smp_locks: LOCK prefixes dropped on a single CPU
  runtime_const,           // runtime_ptr_*/runtime_shift_*: constants set at boot
};
const char* patch_site_kind_name(PatchSiteKind kind);

struct PatchSite {
  uint64_t va = 0;  // runtime (relocated)
  uint32_t len = 0;
  PatchSiteKind kind = PatchSiteKind::alternative;
  uint64_t target = 0;  // jump_label: where its jump goes
};

// Every site, sorted, with what covers a given address.
class PatchSites {
 public:
  PatchSites() = default;
  explicit PatchSites(std::vector<PatchSite> sites);
  const std::vector<PatchSite>& all() const { return sites_; }
  // Calls visit(site, index) for each site whose bytes include `va` (they may overlap:
  // an alternative inside a static call trampoline), nearest start first, until it
  // returns true; returns whether one did.
  template <typename Visit>
  bool any_covering(uint64_t va, Visit visit) const {
    size_t i = first_after(va);
    while (i > 0 && reach_[i - 1] > va) {
      --i;
      if (va - sites_[i].va < sites_[i].len && visit(sites_[i], i)) return true;
    }
    return false;
  }
  std::vector<const PatchSite*> covering(uint64_t va) const;

 private:
  size_t first_after(uint64_t va) const;  // index of the first site starting after va
  std::vector<PatchSite> sites_;          // by va
  std::vector<uint64_t> reach_;           // reach_[i]: the furthest end of sites_[0..i]
};

// One contiguous run of image bytes at its runtime address.
struct ImageRegion {
  std::string section;
  uint64_t va = 0;
  std::vector<uint8_t> bytes;
};

struct KernelImage {
  std::string path;
  std::string build_id;  // GNU build id of the image (.notes), hex; empty if none
  std::string banner;    // linux_banner as the image holds it
  uint64_t kaslr_offset = 0;
  std::vector<ImageRegion> text;    // [_stext, _etext)
  std::vector<ImageRegion> rodata;  // the read-only sections after it, without ro_after_init
  PatchSites sites;
};

// Loads `path` (a vmlinuz, or a vmlinux with its relocation table appended as the
// decompressor gets it) for a kernel shifted by `kaslr_offset`. `symbols` are the
// running kernel's (runtime addresses) and `types` its BTF: the site tables' layouts
// and the bounds of the tables the image keeps in its data (__jump_table,
// __mcount_loc, ...) come from them.
Result<KernelImage> load_kernel_image(const std::string& path, uint64_t kaslr_offset,
                                      const SymbolTable& symbols, const Types& types);

// Applies the x86-64 relocation table the build appends to the vmlinux payload
// (arch/x86/tools/relocs: from the end, 32-bit relocations, a zero, inverse 32-bit
// relocations, a zero, 64-bit relocations, a zero) to the ELF in front of it, for a
// shift of `delta`. Returns the size of the ELF (where the table starts).
// Errc::bad_format when the table does not fit the image.
Result<size_t> apply_kernel_relocations(std::span<uint8_t> payload, uint64_t delta);

}  // namespace nfm
