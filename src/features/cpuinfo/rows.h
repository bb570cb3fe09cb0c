// `cpuinfo`'s section of a frame: the online CPUs as the guest's /proc/cpuinfo
// shows them (arch/x86/kernel/cpu/proc.c show_cpuinfo()). Row type and columns only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "schema/fields.h"

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

struct CpuList {
  static constexpr std::string_view kFeature = "cpuinfo";
  std::vector<CpuRow> rows;  // one per online CPU
};

const schema::Fields<CpuRow>& cpu_fields();

}  // namespace nfm
