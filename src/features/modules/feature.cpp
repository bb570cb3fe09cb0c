// The modules feature: its columns and its place in the frame.
#include "features/feature.h"
#include "features/modules/modules.h"

namespace nfm {

const schema::Fields<ModuleRow>& module_fields() {
  using schema::field;
  using R = ModuleRow;
  static const schema::Fields<ModuleRow> fields{{
      field("name", &R::name, "module name"),
      field("size", &R::size, "size as /proc/modules counts it", "bytes"),
      field("refcount", &R::refcount, "module_refcount(); -1 without CONFIG_MODULE_UNLOAD"),
      field("state", &R::state, "Live, Loading or Unloading"),
      schema::address_field("base", &R::base, "core text base (what /proc/modules shows root)"),
      field("used_by", &R::used_by, "modules that depend on this one"),
      schema::optional_field("permanent", &R::permanent, false,
                             "has an init but no exit: can never be unloaded"),
      schema::optional_field("taints", &R::taints, std::string(),
                             "module taint letters (\"OE\"); left out when untainted"),
  }};
  return fields;
}

NFM_FEATURE(modules) {
  FeatureInfo f{.name = "modules",
                .aliases = {"lsmod"},
                .doc = "loaded kernel modules, as /proc/modules",
                .order = 60};
  set_rows_codec(f, &ModuleList::rows, module_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    ModuleReader* reader = feature_reader<ModuleReader>(ctx, "modules", status);
    if (!reader) return {};
    auto r = reader->list(ctx.options<ModuleOptions>("modules"));
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.walk = walk_end_name(r->walk.end);
    status.count_error("row_errors", r->row_errors);
    status.count_error("user_walk_errors", r->user_walk_errors);
    status.count_error("name_errors", r->name_errors);
    status.rows = r->rows.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
