// The meminfo feature: its columns and its place in the frame.
#include "features/feature.h"
#include "features/meminfo/meminfo.h"

namespace nfm {

const schema::Fields<MemInfo>& meminfo_fields() {
  using schema::field;
  static const schema::Fields<MemInfo> fields{{
      field("total_kb", &MemInfo::total_kb, "MemTotal: totalram_pages", "kB"),
      field("free_kb", &MemInfo::free_kb, "MemFree: NR_FREE_PAGES", "kB"),
      field("available_kb", &MemInfo::available_kb, "MemAvailable: si_mem_available()", "kB"),
      field("buffers_kb", &MemInfo::buffers_kb, "Buffers: nr_blockdev_pages()", "kB"),
      field("cached_kb", &MemInfo::cached_kb, "Cached: NR_FILE_PAGES - swap cache - buffers",
            "kB"),
      field("swap_total_kb", &MemInfo::swap_total_kb, "SwapTotal: total_swap_pages", "kB"),
      field("swap_free_kb", &MemInfo::swap_free_kb, "SwapFree: nr_swap_pages", "kB"),
  }};
  return fields;
}

NFM_FEATURE(meminfo) {
  FeatureInfo f{.name = "meminfo", .doc = "the memory summary of /proc/meminfo", .order = 40};
  set_object_codec(f, meminfo_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    auto r = read_meminfo(ctx.kernel());
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
