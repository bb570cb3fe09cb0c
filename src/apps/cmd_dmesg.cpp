// nfm dmesg: the guest's kernel log, like dmesg.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "features/kmsg.h"

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
          nlohmann::json rows = nlohmann::json::array();
          for (const KmsgRecord& r : log->records) {
            nlohmann::json row = {{"seq", r.seq},         {"ts_ns", r.ts_ns},
                                  {"level", r.level},     {"facility", r.facility},
                                  {"caller", r.caller()}, {"text", r.text}};
            if (!r.subsystem.empty()) row["subsystem"] = r.subsystem;
            if (!r.device.empty()) row["device"] = r.device;
            rows.push_back(std::move(row));
          }
          // Log text is bytes, not always UTF-8: replace what JSON cannot carry.
          fmt::print("{}\n", rows.dump(1, ' ', false, nlohmann::json::error_handler_t::replace));
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
