#include "util/cache_dir.h"

#include <cstdlib>

namespace nfm {

std::string cache_dir(std::string_view kind) {
  std::string root;
  if (const char* d = std::getenv("NFM_CACHE_DIR"); d && *d) {
    root = d;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    root = std::string(x) + "/nfm";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    root = std::string(h) + "/.cache/nfm";
  } else {
    return {};
  }
  return root + "/" + std::string(kind);
}

}  // namespace nfm
