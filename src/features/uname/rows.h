// `uname`'s section of a frame: the init UTS namespace (what `uname -a` prints in
// the guest's root namespace). Row type and columns only.
#pragma once

#include <string>
#include <string_view>

#include "schema/fields.h"

namespace nfm {

struct UnameInfo {
  static constexpr std::string_view kFeature = "uname";
  std::string sysname, nodename, release, version, machine, domainname;
};

const schema::Fields<UnameInfo>& uname_fields();

}  // namespace nfm
