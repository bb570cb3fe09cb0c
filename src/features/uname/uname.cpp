#include "features/uname/uname.h"

namespace nfm {

Result<UnameInfo> read_uname(Kernel& kernel) {
  NFM_ASSIGN(uint64_t ns, kernel.symbol("init_uts_ns"));
  const Types& types = kernel.types();
  UnameInfo info;
  const std::pair<const char*, std::string*> fields[] = {
      {"name.sysname", &info.sysname}, {"name.nodename", &info.nodename},
      {"name.release", &info.release}, {"name.version", &info.version},
      {"name.machine", &info.machine}, {"name.domainname", &info.domainname}};
  for (const auto& [path, out] : fields) {
    NFM_ASSIGN(Field f, types.member("uts_namespace", path));
    NFM_ASSIGN(*out, kernel.read_string(ns + f.offset, f.size));
  }
  return info;
}

}  // namespace nfm
