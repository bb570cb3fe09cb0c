// `cpuinfo`: the section declared in rows.h, read from cpu_data and boot_cpu_data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "features/cpuinfo/rows.h"
#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

Result<std::vector<CpuRow>> read_cpuinfo(Kernel& kernel);

// The names of the set bits of `words` (32 bits each), as /proc prints them:
// bit i gets names[i] and bits without a name (empty) are skipped. Bits past
// names.size() are not capability flags (x86_capability also holds the bugs).
std::vector<std::string> decode_flags(const std::vector<uint32_t>& words,
                                      const std::vector<std::string>& names);

}  // namespace nfm
