// Finding the kernel in guest-physical memory despite KASLR, with no file.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernel/symbols.h"
#include "kernel/vmcoreinfo.h"
#include "memory/physical_memory.h"
#include "util/result.h"

namespace nfm {

// x86-64 links the kernel image at __START_KERNEL_map; KASLR shifts it.
inline constexpr uint64_t kStartKernelMap = 0xffffffff80000000ULL;

struct KernelLocation {
  std::string release;                   // OSRELEASE, e.g. "6.1.0-56-cloud-amd64"
  std::string build_id;                  // GNU build id, hex: VMCOREINFO's or the image's note
  uint64_t kaslr_offset = 0;             // virtual shift of the kernel image
  int64_t phys_base = 0;                 // image pa = va - kStartKernelMap + phys_base
  uint64_t dtb = 0;                      // guest-physical address of init_top_pgt
  int levels = 4;                        // 4- or 5-level paging
  std::optional<VmcoreInfo> vmcoreinfo;  // route (a)
  std::optional<SymbolTable> symbols;    // route (b): kallsyms found in physical memory
  uint64_t kallsyms_va = 0;              // route (b): where its tables start (virtual),
  uint64_t kallsyms_size = 0;            // how many bytes they span,
  uint64_t kallsyms_relocated_at = 0;    // and where relative_base lies in them
  std::string method;                    // how it was found, for frame metadata

  // A symbol's runtime address as the located kernel itself states it
  // (VMCOREINFO or its own kallsyms), to check profiles from files against.
  std::optional<uint64_t> reference_symbol(const std::string& name) const;

  // Kernel-image virtual address -> guest-physical, by arithmetic.
  uint64_t image_pa(uint64_t va) const {
    return va - kStartKernelMap + static_cast<uint64_t>(phys_base);
  }
  uint64_t image_va(uint64_t pa) const {
    return pa + kStartKernelMap - static_cast<uint64_t>(phys_base);
  }
  bool in_image(uint64_t va) const { return va >= kStartKernelMap; }
};

// Locates the kernel: (a) from the VMCOREINFO note; failing that, (b) from its
// kallsyms tables found by structure in physical memory. The caller validates
// the result against the kernel's own objects (init_task) once types are known.
// `skip_dtbs`: kernels (by the physical address of their top page table) to pass
// over — the stale image of a kernel that ran before a guest reboot.
Result<KernelLocation> locate_kernel(PhysicalMemory& memory,
                                     const std::vector<uint64_t>& skip_dtbs = {});

// Every candidate location, for a caller that checks each further (Kernel::attach
// loads and checks a profile): each VMCOREINFO copy consistent with the page
// tables it names, in the order found; then, if there was none and `kallsyms`, the
// kallsyms route. `visit` returns false to stop. Candidates that fail their checks
// are described in `rejected` (a planted VMCOREINFO is a finding, not an error).
// `vmcoreinfo_hint`: see for_each_vmcoreinfo().
void locate_kernels(PhysicalMemory& memory, const std::vector<uint64_t>& skip_dtbs,
                    const std::function<bool(KernelLocation)>& visit,
                    std::vector<std::string>* rejected, bool kallsyms = true,
                    std::optional<uint64_t> vmcoreinfo_hint = std::nullopt);
// The error when no candidate passed: every rejection, and why.
Error no_kernel_found(const std::vector<std::string>& rejected);

// The two routes on their own (tests exercise each).
Result<KernelLocation> locate_by_vmcoreinfo(PhysicalMemory& memory,
                                            const std::vector<uint64_t>& skip_dtbs = {});
Result<KernelLocation> locate_by_kallsyms(PhysicalMemory& memory);

}  // namespace nfm
