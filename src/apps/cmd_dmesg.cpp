// nfm dmesg: the guest's kernel log, like dmesg.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "features/kmsg/kmsg.h"

namespace nfm::app {

void register_dmesg(CLI::App& app) {
  add_guest_command(app, "dmesg", "Print the guest's kernel log (like dmesg)",
                    [](Kernel& kernel, const TargetArgs& args) {
                      auto reader = KmsgReader::create(kernel);
                      if (!reader)
                        throw CLI::RuntimeError(report_error(reader.error().to_string()));
                      auto log = reader->read();
                      if (!log) throw CLI::RuntimeError(report_error(log.error().to_string()));
                      Output o;
                      format_dmesg(o, *log, args.json);
                      print(o);
                    });
}

}  // namespace nfm::app
