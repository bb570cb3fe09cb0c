// Finding the kernel in guest-physical memory despite KASLR, with no file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kernel/vmcoreinfo.h"
#include "memory/physical_memory.h"
#include "util/result.h"

namespace nfm {

// x86-64 links the kernel image at __START_KERNEL_map; KASLR shifts it.
inline constexpr uint64_t kStartKernelMap = 0xffffffff80000000ULL;

struct KernelLocation {
  std::string release;       // OSRELEASE, e.g. "6.1.0-56-cloud-amd64"
  uint64_t kaslr_offset = 0; // virtual shift of the kernel image
  int64_t phys_base = 0;     // image pa = va - kStartKernelMap + phys_base
  uint64_t dtb = 0;          // guest-physical address of init_top_pgt
  int levels = 4;            // 4- or 5-level paging
  std::optional<VmcoreInfo> vmcoreinfo;
  std::string method;        // how it was found, for frame metadata

  // Kernel-image virtual address -> guest-physical, by arithmetic.
  uint64_t image_pa(uint64_t va) const { return va - kStartKernelMap + static_cast<uint64_t>(phys_base); }
  bool in_image(uint64_t va) const { return va >= kStartKernelMap; }
};

// Locates the kernel from the VMCOREINFO note. The caller validates the result
// against the kernel's own objects (init_task) once symbols are known.
Result<KernelLocation> locate_kernel(PhysicalMemory& memory);

}  // namespace nfm
