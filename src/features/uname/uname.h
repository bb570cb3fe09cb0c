// `uname`: the init UTS namespace (what `uname -a` prints in the guest's root namespace).
#pragma once

#include <string>

#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {

struct UnameInfo {
  std::string sysname, nodename, release, version, machine, domainname;
};

Result<UnameInfo> read_uname(Kernel& kernel);

}  // namespace nfm
