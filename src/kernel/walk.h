// Bounded, cycle-safe walks over kernel linked structures. Every feature goes
// through these: a live (or hostile) guest can hand us torn or looping lists.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "arch/address_space.h"
#include "kernel/walk_result.h"
#include "util/result.h"

namespace nfm {

// A kernel virtual address worth following: canonical, upper half, aligned.
inline bool plausible_kernel_pointer(uint64_t p, uint64_t align = 8) {
  return p >= 0xff00000000000000ULL && p % align == 0;
}

// Brent's cycle detection: a checkpoint that teleports to the current node at
// power-of-two distances; meeting it again means a loop. O(1) memory, and any loop
// is caught within twice its length.
class CycleGuard {
 public:
  explicit CycleGuard(uint64_t start = 0) : checkpoint_(start) {}
  // Whether `node`, the walk's next step, closes a loop.
  bool revisits(uint64_t node) {
    if (node == checkpoint_) return true;
    if (++steps_ == power_) {
      checkpoint_ = node;
      power_ *= 2;
      steps_ = 0;
    }
    return false;
  }

 private:
  uint64_t checkpoint_;
  size_t power_ = 1, steps_ = 0;
};

// Walks the circular `struct list_head` list whose head is at `head`, calling
// `visit(node)` with the address of each node's list_head (not the head itself).
// `visit` returns false to stop early (counted as complete). At most `max_nodes`.
template <typename Visit>
WalkResult walk_list(AddressSpace& space, uint64_t head, size_t max_nodes, Visit&& visit) {
  WalkResult r;
  struct {
    uint64_t next, prev;
  } link{};
  if (!space.read(head, &link, sizeof link)) return {0, WalkEnd::bad_pointer, head};
  uint64_t prev = head;
  uint64_t node = link.next;
  CycleGuard guard(head);
  while (node != head) {
    if (!plausible_kernel_pointer(node)) return {r.nodes, WalkEnd::bad_pointer, node};
    if (r.nodes >= max_nodes) return {r.nodes, WalkEnd::limit, 0};
    if (!space.read(node, &link, sizeof link)) return {r.nodes, WalkEnd::bad_pointer, node};
    if (link.prev != prev) return {r.nodes, WalkEnd::torn, node};
    if (guard.revisits(node)) return {r.nodes, WalkEnd::cycle, node};
    ++r.nodes;
    if (!visit(node)) return r;
    prev = node;
    node = link.next;
  }
  return r;
}

// Walks an `hlist_nulls_head` chain (struct hlist_nulls_node), calling
// `visit(node)`. The chain ends at a "nulls" marker: an odd value the kernel
// stores instead of NULL (for hash tables, usually the bucket number << 1 | 1).
// A lockless reader that ends on another bucket's marker knows the node it
// followed moved to another chain: `*end_marker` receives the marker so the
// caller can check it. NULL also ends the walk. Bounded and cycle-safe.
template <typename Visit>
WalkResult walk_hlist_nulls(AddressSpace& space, uint64_t first, size_t max_nodes, Visit&& visit,
                            uint64_t* end_marker = nullptr) {
  WalkResult r;
  uint64_t node = first;
  CycleGuard guard;
  while (node != 0 && !(node & 1)) {
    if (!plausible_kernel_pointer(node)) return {r.nodes, WalkEnd::bad_pointer, node};
    if (r.nodes >= max_nodes) return {r.nodes, WalkEnd::limit, 0};
    if (guard.revisits(node)) return {r.nodes, WalkEnd::cycle, node};
    uint64_t next = 0;  // a node's first word
    if (!space.read(node, &next, sizeof next)) return {r.nodes, WalkEnd::bad_pointer, node};
    ++r.nodes;
    if (!visit(node)) return r;
    node = next;
  }
  if (end_marker) *end_marker = node;
  return r;
}

// Walks an `hlist_head` chain (NULL-terminated `struct hlist_node`), calling
// `visit(node)`. Bounded and cycle-safe like walk_list. The same walk as the nulls
// kind: a plain hlist node is never odd, so an odd link is reported as bad.
template <typename Visit>
WalkResult walk_hlist(AddressSpace& space, uint64_t first, size_t max_nodes, Visit&& visit) {
  uint64_t end = 0;
  WalkResult r = walk_hlist_nulls(space, first, max_nodes, std::forward<Visit>(visit), &end);
  if (end != 0 && r.end == WalkEnd::complete) return {r.nodes, WalkEnd::bad_pointer, end};
  return r;
}

}  // namespace nfm
