// `meminfo`: the memory summary of the guest's /proc/meminfo (fs/proc/meminfo.c).
#pragma once

#include "features/meminfo/rows.h"

#include <cstdint>

#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {


Result<MemInfo> read_meminfo(Kernel& kernel);

}  // namespace nfm
