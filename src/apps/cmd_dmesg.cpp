// nfm dmesg: the guest's kernel log, like dmesg.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/kmsg/kmsg.h"

namespace nfm::app {

void register_dmesg(CLI::App& app) {
  add_guest_command(app, "dmesg", "Print the guest's kernel log (like dmesg)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      Output o;
                      format_dmesg(o, crawl_section<KmsgLog>(kernel), args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
