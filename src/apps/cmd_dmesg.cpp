// nfm dmesg: the guest's kernel log, like dmesg.
#include <fmt/core.h>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/kmsg.h"
#include "frame/frame_json.h"

namespace nfm::app {

void register_dmesg(CLI::App& app) {
  add_guest_command(
      app, "dmesg", "Print the guest's kernel log (like dmesg)",
      [](Kernel& kernel, const TargetArgs& args) {
        auto reader = KmsgReader::create(kernel);
        if (!reader) throw CLI::RuntimeError(report_error(reader.error().to_string()));
        auto log = reader->read();
        if (!log) throw CLI::RuntimeError(report_error(log.error().to_string()));
        if (args.json) {
          fmt::print("{}\n", dump_json(kmsg_json(log->records)));
        } else {
          for (const KmsgRecord& r : log->records) {
            // The kernel's own syslog format: every line of a record gets the prefix.
            const std::string prefix =
                fmt::format("[{:5}.{:06}] ", r.ts_ns / 1000000000, r.ts_ns % 1000000000 / 1000);
            size_t start = 0;
            do {
              const size_t end = r.text.find('\n', start);
              fmt::print("{}{}\n", prefix, std::string_view(r.text).substr(start, end - start));
              start = end == std::string::npos ? end : end + 1;
            } while (start != std::string::npos);
          }
        }
        if (log->in_flight || log->torn || log->unreadable)
          fmt::print(stderr,
                     "nfm: warning: {} records skipped ({} being written, {} inconsistent, {} "
                     "unreadable)\n",
                     log->in_flight + log->torn + log->unreadable, log->in_flight, log->torn,
                     log->unreadable);
      });
}

}  // namespace nfm::app
