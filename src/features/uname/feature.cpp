// The uname feature: its columns and its place in the frame.
#include "features/feature.h"
#include "features/uname/uname.h"

namespace nfm {

const schema::Fields<UnameInfo>& uname_fields() {
  using schema::field;
  static const schema::Fields<UnameInfo> fields{{
      field("sysname", &UnameInfo::sysname, "uname -s (init_uts_ns.name.sysname)"),
      field("nodename", &UnameInfo::nodename, "uname -n: the host name"),
      field("release", &UnameInfo::release, "uname -r"),
      field("version", &UnameInfo::version, "uname -v"),
      field("machine", &UnameInfo::machine, "uname -m"),
      field("domainname", &UnameInfo::domainname, "the NIS domain name"),
  }};
  return fields;
}

NFM_FEATURE(uname) {
  FeatureInfo f{.name = "uname", .doc = "the guest's uname -a (init UTS namespace)", .order = 10};
  set_object_codec(f, uname_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    auto r = read_uname(ctx.kernel());
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.rows = 1;
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
