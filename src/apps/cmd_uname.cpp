// nfm uname: the guest's uname -a.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/uname/uname.h"

namespace nfm::app {

void register_uname(CLI::App& app) {
  add_guest_command(app, "uname", "Print the guest's system information (like uname -a)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      Output o;
                      format_uname(o, crawl_section<UnameInfo>(kernel), args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
