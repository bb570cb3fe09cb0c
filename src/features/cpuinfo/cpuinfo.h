// `cpuinfo`: the online CPUs as the guest's /proc/cpuinfo shows them
// (arch/x86/kernel/cpu/proc.c show_cpuinfo()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

struct CpuRow {
  uint32_t processor = 0;          // cpu_index
  std::string vendor;              // vendor_id: x86_vendor_id ("unknown" if empty)
  uint32_t family = 0;             // cpu family: x86
  uint32_t model = 0;              // x86_model
  uint32_t stepping = 0;           // x86_stepping
  std::string model_name;          // x86_model_id ("unknown" if empty)
  uint64_t khz = 0;                // cpu_khz: what "cpu MHz" shows without APERF/MPERF or cpufreq
  int64_t cache_kb = -1;           // x86_cache_size (absent from /proc when unknown)
  std::vector<std::string> flags;  // x86_capability bits named by the guest's x86_cap_flags[]
};

Result<std::vector<CpuRow>> read_cpuinfo(Kernel& kernel);

// The names of the set bits of `words` (32 bits each), as /proc prints them:
// bit i gets names[i] and bits without a name (empty) are skipped. Bits past
// names.size() are not capability flags (x86_capability also holds the bugs).
std::vector<std::string> decode_flags(const std::vector<uint32_t>& words,
                                      const std::vector<std::string>& names);

}  // namespace nfm
