// `uptime`: time since boot, load averages, jiffies and the boot wall-clock time,
// as the guest's /proc/uptime, /proc/loadavg and /proc/stat (btime) show them.
#pragma once

#include <cstdint>

#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

struct UptimeInfo {
  // CLOCK_BOOTTIME at the timekeeper's last update (tkr_mono.base + its
  // sub-second part + offs_boot). The timekeeper advances on every tick of a
  // busy CPU, so this trails /proc/uptime by about a tick (1-4 ms); a fully
  // idle NOHZ guest updates it when a CPU next wakes.
  uint64_t uptime_ns = 0;
  uint64_t load_centi[3] = {};  // loadavg in hundredths, rounded as /proc/loadavg does
  uint64_t jiffies = 0;
  int64_t boot_time = 0;  // wall clock at boot, seconds since the epoch (/proc/stat btime)
};

Result<UptimeInfo> read_uptime(Kernel& kernel);

// One avenrun[] entry (fixed point, FSHIFT = 11 fractional bits) to hundredths,
// the way fs/proc/loadavg.c prints it: LOAD_INT/LOAD_FRAC of avenrun + FIXED_1/200.
uint64_t loadavg_centi(uint64_t avenrun);

}  // namespace nfm
