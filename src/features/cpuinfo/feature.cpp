// The cpuinfo feature: its columns and its place in the frame.
#include <cmath>

#include "features/cpuinfo/cpuinfo.h"
#include "features/feature.h"

namespace nfm {

const schema::Fields<CpuRow>& cpu_fields() {
  using schema::Column;
  using schema::field;
  using schema::json;
  using schema::Type;
  static const schema::Fields<CpuRow> fields{{
      field("processor", &CpuRow::processor, "the CPU's number (cpu_index)"),
      field("vendor", &CpuRow::vendor, "vendor_id (x86_vendor_id)"),
      field("family", &CpuRow::family, "cpu family (x86)"),
      field("model", &CpuRow::model, "model (x86_model)"),
      field("stepping", &CpuRow::stepping, "stepping (x86_stepping)"),
      field("model_name", &CpuRow::model_name, "model name (x86_model_id)"),
      schema::custom_field<CpuRow>(
          Column{.name = "mhz", .type = Type::real, .unit = "MHz", .doc = "cpu MHz (cpu_khz)"},
          [](const CpuRow& c) { return json(c.khz / 1000.0); },
          [](CpuRow& c, const json& v, const std::string& path) {
            const double mhz = schema::read_number(v, path);
            if (!(mhz >= 0) || mhz > 1e12) schema::fail(path, fmt::format("{} is out of range", mhz));
            c.khz = static_cast<uint64_t>(std::llround(mhz * 1000.0));
          }),
      schema::custom_field<CpuRow>(
          Column{.name = "cache_kb",
                 .type = Type::int64,
                 .unit = "kB",
                 .doc = "cache size (x86_cache_size); null when the kernel does not know it",
                 .nullable = true},
          [](const CpuRow& c) { return c.cache_kb >= 0 ? json(c.cache_kb) : json(); },
          [](CpuRow& c, const json& v, const std::string& path) {
            c.cache_kb = v.is_null() ? -1 : schema::read_integer<int64_t>(v, path);
          }),
      field("flags", &CpuRow::flags, "x86_capability bits named by the guest's x86_cap_flags[]"),
  }};
  return fields;
}

NFM_FEATURE(cpuinfo) {
  FeatureInfo f{.name = "cpuinfo", .doc = "one row per online CPU, as /proc/cpuinfo", .order = 30};
  set_rows_codec(f, &CpuList::rows, cpu_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    auto r = read_cpuinfo(ctx.kernel());
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.rows = r->size();
    return CpuList{std::move(*r)};
  };
  return f;
}

}  // namespace nfm
