// The service manager: readiness, status and watchdog notifications, and journal
// entries with fields of their own (VM=, EVENT=). Every call is harmless outside
// systemd (no NOTIFY_SOCKET, no journal), so the daemon does not need to know how
// it was started.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace nfm::systemd {

// One sd_notify(3) state line: "READY=1", "STATUS=...", "WATCHDOG=1", "RELOADING=1",
// "STOPPING=1". Returns whether a service manager received it.
bool notify(const std::string& state);

// How often the manager wants WATCHDOG=1 (half its WatchdogSec=), when it wants it.
std::optional<std::chrono::microseconds> watchdog_period();

// Whether stderr is the journal's stream (JOURNAL_STREAM names it): the service's own
// log, where structured entries say more than text lines.
bool stderr_is_journal();

struct JournalField {
  std::string name;  // upper case, e.g. "VM" (journald's rules: [A-Z0-9_], no leading _)
  std::string value;
};

// Syslog priorities (sd-journal uses them).
inline constexpr int kPriorityError = 3;
inline constexpr int kPriorityWarning = 4;
inline constexpr int kPriorityInfo = 6;

// Sends one entry with MESSAGE, PRIORITY and `fields`; false when no journal took it.
bool journal_send(int priority, const std::string& message,
                  const std::vector<JournalField>& fields);

}  // namespace nfm::systemd
