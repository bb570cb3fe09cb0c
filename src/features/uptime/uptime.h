// `uptime`: the section declared in rows.h, read from the guest's timekeeper,
// avenrun[] and jiffies.
#pragma once

#include <cstdint>

#include "features/uptime/rows.h"
#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

Result<UptimeInfo> read_uptime(Kernel& kernel);

// One avenrun[] entry (fixed point, FSHIFT = 11 fractional bits) to hundredths,
// the way fs/proc/loadavg.c prints it: LOAD_INT/LOAD_FRAC of avenrun + FIXED_1/200.
uint64_t loadavg_centi(uint64_t avenrun);

}  // namespace nfm
