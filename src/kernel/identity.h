// Which kernel a guest runs and where its profile came from: plain data that
// frames carry (kernel.h has the kernel model itself).
#pragma once

#include <string>
#include <vector>

namespace nfm {

// Guest-wide facts found while attaching, for frame metadata and `nfm uname`.
struct KernelIdentity {
  std::string release;         // from VMCOREINFO OSRELEASE
  std::string banner;          // linux_banner, without the trailing newline
  std::string build_id;        // GNU build id (VMCOREINFO's or the image's note), when found
  std::string symbols_source;  // "guest kallsyms", "System.map FILE", ...
  std::string types_source;    // "guest BTF", "BTF FILE", ...
  std::string profile_cache;   // "warm FILE", "cold, saved to FILE", "off", ...
  // What attaching found suspicious but passed over, e.g. "rejected VMCOREINFO at
  // 0x1000 (BUILD-ID ...): ..." for a copy that is not the kernel's own.
  std::vector<std::string> warnings;
};

}  // namespace nfm
