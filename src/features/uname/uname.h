// `uname`: the init UTS namespace (what `uname -a` prints in the guest's root namespace).
#pragma once

#include "features/uname/rows.h"

#include <string>

#include "kernel/kernel.h"
#include "util/result.h"

namespace nfm {


Result<UnameInfo> read_uname(Kernel& kernel);

}  // namespace nfm
