#include "util/systemd.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
// CODE_FILE/CODE_LINE would name this wrapper, not the event's origin.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace nfm::systemd {

bool notify(const std::string& state) {
  return sd_notify(0, state.c_str()) > 0;
}

std::optional<std::chrono::microseconds> watchdog_period() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

bool stderr_is_journal() {
  // "DEVICE:INODE" of the stream systemd connected; a redirected stderr no longer matches.
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  unsigned long long dev = 0, ino = 0;  // NOLINT(google-runtime-int): sscanf's types
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  return dev == st.st_dev && ino == st.st_ino;
}

bool journal_send(int priority, const std::string& message,
                  const std::vector<JournalField>& fields) {
  std::vector<std::string> lines;
  lines.reserve(fields.size() + 2);
  lines.push_back("MESSAGE=" + message);
  lines.push_back("PRIORITY=" + std::to_string(priority));
  for (const auto& f : fields)
    if (!f.value.empty()) lines.push_back(f.name + "=" + f.value);
  std::vector<iovec> iov;
  iov.reserve(lines.size());
  for (auto& l : lines) iov.push_back({l.data(), l.size()});
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) == 0;
}

}  // namespace nfm::systemd
