// `uptime`'s section of a frame: time since boot, load averages, jiffies and the
// boot wall-clock time, as the guest's /proc/uptime, /proc/loadavg and /proc/stat
// (btime) show them. Row type and columns only: no kernel model here.
#pragma once

#include <cstdint>
#include <string_view>

#include "schema/fields.h"

namespace nfm {

struct UptimeInfo {
  static constexpr std::string_view kFeature = "uptime";
  // CLOCK_BOOTTIME at the timekeeper's last update (tkr_mono.base + its
  // sub-second part + offs_boot). The timekeeper advances on every tick of a
  // busy CPU, so this trails /proc/uptime by about a tick (1-4 ms); a fully
  // idle NOHZ guest updates it when a CPU next wakes.
  uint64_t uptime_ns = 0;
  uint64_t load_centi[3] = {};  // loadavg in hundredths, rounded as /proc/loadavg does
  uint64_t jiffies = 0;
  int64_t boot_time = 0;  // wall clock at boot, seconds since the epoch (/proc/stat btime)
};

const schema::Fields<UptimeInfo>& uptime_fields();

}  // namespace nfm
