// How a bounded walk of a kernel list ended: plain data that rows and frames
// carry (walk.h has the walkers themselves).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nfm {

// Why a walk ended.
enum class WalkEnd {
  complete,     // came back to the head
  limit,        // hit the node bound
  cycle,        // looped without passing the head
  torn,         // node->next->prev != node: the list changed under us
  bad_pointer,  // non-canonical, NULL or unreadable link
};

struct WalkResult {
  size_t nodes = 0;
  WalkEnd end = WalkEnd::complete;
  uint64_t fault_address = 0;  // for bad_pointer
  bool ok() const { return end == WalkEnd::complete; }
};

const char* walk_end_name(WalkEnd end);

}  // namespace nfm
