#include "kernel/walk.h"

namespace nfm {

const char* walk_end_name(WalkEnd end) {
  switch (end) {
    case WalkEnd::complete:
      return "complete";
    case WalkEnd::limit:
      return "limit";
    case WalkEnd::cycle:
      return "cycle";
    case WalkEnd::torn:
      return "torn";
    case WalkEnd::bad_pointer:
      return "bad_pointer";
  }
  return "unknown";
}

}  // namespace nfm
