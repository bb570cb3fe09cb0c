// Times as people write them, for every command that takes or prints one.
#include "util/time_text.h"

#include <charconv>
#include <ctime>

namespace nfm {

namespace {
constexpr uint64_t kNsPerSec = 1'000'000'000;
}  // namespace

std::string iso_time(uint64_t ns) {
  const std::time_t t = static_cast<std::time_t>(ns / kNsPerSec);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

Result<uint64_t> parse_time(const std::string& text, uint64_t now) {
  auto bad = [&] {
    return make_error(
        Errc::invalid_argument,
        "bad time '" + text + "' (use -30s, -5m, -2h, -1d, 2026-11-27T23:50:01Z or 23:50:01)");
  };
  if (!text.empty() && text[0] == '-') {
    const char unit = text.back();
    const uint64_t scale = unit == 's'   ? 1
                           : unit == 'm' ? 60
                           : unit == 'h' ? 3600
                           : unit == 'd' ? 86400
                                         : 0;
    if (!scale) return bad();
    uint64_t n = 0;
    const char* first = text.data() + 1;
    const char* last = text.data() + text.size() - 1;
    if (first == last || std::from_chars(first, last, n).ptr != last) return bad();
    const uint64_t back = n * scale * kNsPerSec;
    return back > now ? 0 : now - back;
  }
  std::tm tm{};
  const char* end = nullptr;
  for (const char* format : {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"}) {
    tm = {};
    end = strptime(text.c_str(), format, &tm);
    if (end) break;
  }
  if (!end) {
    // A time of day: today's date (UTC).
    const std::time_t t = static_cast<std::time_t>(now / kNsPerSec);
    gmtime_r(&t, &tm);
    end = strptime(text.c_str(), "%H:%M:%S", &tm);
    if (!end) return bad();
  }
  if (*end == 'Z') ++end;
  if (*end) return bad();
  const int64_t s = timegm(&tm);
  if (s < 0) return bad();
  return static_cast<uint64_t>(s) * kNsPerSec + kNsPerSec - 1;  // the whole second
}

}  // namespace nfm
