// VMCOREINFO: the key=value text the kernel keeps in its own memory for crash
// tools (kernel/crash_core.c, kernel/vmcore_info.c on 6.10+). It gives the
// KASLR offset, phys_base, the kernel page table, the paging mode and, on 6.0+,
// where the kallsyms tables are.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "memory/physical_memory.h"
#include "util/result.h"

namespace nfm {

class VmcoreInfo {
 public:
  // Parses the note's text ("OSRELEASE=...\nPAGESIZE=4096\n...").
  static Result<VmcoreInfo> parse(std::string_view text);

  const std::string* get(const std::string& key) const;
  std::string osrelease() const;
  std::optional<uint64_t> symbol(const std::string& name) const;    // SYMBOL(name)=hex
  std::optional<int64_t> number(const std::string& name) const;     // NUMBER(name)=decimal
  std::optional<uint64_t> offset(const std::string& member) const;  // OFFSET(type.member)=dec
  std::optional<uint64_t> size(const std::string& type) const;      // SIZE(type)=dec
  std::optional<uint64_t> kernel_offset() const;                    // KERNELOFFSET=hex
  std::optional<std::string> build_id() const;                      // BUILD-ID=hex

  const std::map<std::string, std::string>& entries() const { return entries_; }
  uint64_t found_at = 0;  // guest-physical address of the text (0: from the image file)

 private:
  std::map<std::string, std::string> entries_;
};

// Any guest process can write VMCOREINFO-looking text into its own pages, so a copy
// found in memory is only a candidate: the caller checks each against the kernel.
// At most this many distinct texts are offered (planting more only makes that
// guest's own attach fail, never another's).
inline constexpr int kMaxVmcoreinfoCandidates = 16;

// Offers `visit` the VMCOREINFO text a memory image carries (found_at 0; the dump's
// writer put it there, not the guest), else every distinct copy in guest-physical
// memory that parses, page starts first (where the kernel keeps its own). `visit`
// returns false to stop. `first_try`: a page that held the text before (an earlier
// attach to the same unchanging image), offered before the scan.
void for_each_vmcoreinfo(PhysicalMemory& memory, const std::function<bool(VmcoreInfo)>& visit,
                         std::optional<uint64_t> first_try = std::nullopt);

// The first candidate that `accept` (optional) takes, e.g. not the note of a kernel
// that ran before a reboot and still lies in RAM nobody has overwritten yet.
Result<VmcoreInfo> find_vmcoreinfo(PhysicalMemory& memory,
                                   const std::function<bool(const VmcoreInfo&)>& accept = {});

}  // namespace nfm
