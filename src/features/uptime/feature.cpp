// The uptime feature: its columns and its place in the frame.
#include <cmath>

#include "features/feature.h"
#include "features/uptime/uptime.h"

namespace nfm {

namespace {

using schema::Column;
using schema::json;
using schema::Type;

// A load average in hundredths (what /proc/loadavg prints) as a JSON number and back.
schema::Field<UptimeInfo> load_field(std::string_view name, int index, std::string_view doc) {
  return schema::custom_field<UptimeInfo>(
      Column{.name = name, .type = Type::real, .doc = doc},
      [index](const UptimeInfo& u) { return json(u.load_centi[index] / 100.0); },
      [index](UptimeInfo& u, const json& v, const std::string& path) {
        const double value = schema::read_number(v, path);
        if (!(value >= 0) || value > 1e15) schema::fail(path, fmt::format("{} is out of range", value));
        u.load_centi[index] = static_cast<uint64_t>(std::llround(value * 100.0));
      });
}

}  // namespace

const schema::Fields<UptimeInfo>& uptime_fields() {
  static const schema::Fields<UptimeInfo> fields{{
      schema::custom_field<UptimeInfo>(
          Column{.name = "uptime_s",
                 .type = Type::real,
                 .unit = "s",
                 .doc = "time since boot with /proc/uptime's two decimals (truncated)",
                 .derived = true},
          [](const UptimeInfo& u) {
            return json(static_cast<double>(u.uptime_ns / 10'000'000) / 100.0);
          },
          nullptr),
      schema::field("uptime_ns", &UptimeInfo::uptime_ns,
                    "CLOCK_BOOTTIME at the timekeeper's last update", "ns"),
      load_field("load1", 0, "1-minute load average (avenrun[0])"),
      load_field("load5", 1, "5-minute load average (avenrun[1])"),
      load_field("load15", 2, "15-minute load average (avenrun[2])"),
      schema::field("jiffies", &UptimeInfo::jiffies, "jiffies_64"),
      schema::field("boot_time", &UptimeInfo::boot_time,
                    "wall clock at boot (/proc/stat btime)", "s since the epoch"),
  }};
  return fields;
}

NFM_FEATURE(uptime) {
  FeatureInfo f{.name = "uptime",
                .doc = "time since boot, load averages, jiffies, boot time (uptime, /proc/loadavg)",
                .order = 20};
  set_object_codec(f, uptime_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    auto r = read_uptime(ctx.kernel());
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.rows = 1;
    return *r;
  };
  return f;
}

}  // namespace nfm
