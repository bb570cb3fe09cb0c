#include "util/result.h"

#include <cinttypes>
#include <cstdio>

namespace nfm {

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::io:
      return "io";
    case Errc::permission:
      return "permission";
    case Errc::not_found:
      return "not_found";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::bad_format:
      return "bad_format";
    case Errc::fault:
      return "fault";
    case Errc::mismatch:
      return "mismatch";
    case Errc::limit:
      return "limit";
    case Errc::unsupported:
      return "unsupported";
  }
  return "unknown";
}

std::string Error::to_string() const {
  if (!address) return message;
  char buf[32];
  std::snprintf(buf, sizeof buf, " (at 0x%" PRIx64 ")", *address);
  return message + buf;
}

}  // namespace nfm
