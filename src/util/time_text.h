// Times as people write them, for every command that takes or prints one.
#pragma once

#include <cstdint>
#include <string>

#include "util/result.h"

namespace nfm {

// "2026-11-27T23:50:01Z"
std::string iso_time(uint64_t ns);
// "-30s", "-5m", "-2h", "-1d", "2026-11-27T23:50:01Z", "2026-11-27 23:50:01", "23:50:01"
// (today, UTC) -> ns since the epoch (the end of that second).
Result<uint64_t> parse_time(const std::string& text, uint64_t now_ns);

}  // namespace nfm
