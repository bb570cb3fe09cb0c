// Bounded walks of the kernel's trees: red-black trees (struct rb_node: the
// scheduler's runqueues, the module address tree) and xarrays (the radix tree under
// every IDR: PID namespaces). Same contract as walk.h: a guest may hand us any
// pointers, so every walk stops at a node budget and a depth no real tree reaches,
// and says how it ended.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "arch/address_space.h"
#include "kernel/btf_types.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

// Where struct rb_node keeps its children.
struct RbLayout {
  uint64_t left = 0, right = 0;
  static Result<RbLayout> of(const Types& types);
};

// In-order walk of the red-black tree whose root node is `root` (rb_root.rb_node;
// 0 is an empty tree), calling `visit(node)` with each rb_node's address. `visit`
// returns false to stop (counted as complete). A red-black tree of n nodes is at
// most 2*log2(n+1) deep, so a deeper path (128: more nodes than memory holds) ends
// the walk as a cycle; a loop through right children spends the node budget (limit).
template <typename Visit>
WalkResult walk_rbtree(AddressSpace& space, const RbLayout& layout, uint64_t root, size_t max_nodes,
                       Visit&& visit) {
  constexpr size_t kMaxDepth = 128;
  WalkResult r;
  std::vector<uint64_t> stack;  // the path of nodes whose left side is being walked
  uint64_t node = root;
  while (node != 0 || !stack.empty()) {
    while (node != 0) {
      if (!plausible_kernel_pointer(node)) return {r.nodes, WalkEnd::bad_pointer, node};
      if (stack.size() >= kMaxDepth) return {r.nodes, WalkEnd::cycle, node};
      stack.push_back(node);
      uint64_t left = 0;
      if (!space.read(node + layout.left, &left, sizeof left))
        return {r.nodes, WalkEnd::bad_pointer, node};
      node = left;
    }
    node = stack.back();
    stack.pop_back();
    if (r.nodes >= max_nodes) return {r.nodes, WalkEnd::limit, 0};
    ++r.nodes;
    if (!visit(node)) return r;
    uint64_t right = 0;
    if (!space.read(node + layout.right, &right, sizeof right))
      return {r.nodes, WalkEnd::bad_pointer, node};
    node = right;
  }
  return r;
}

// Where struct xa_node and struct xarray keep what a walk needs.
struct XarrayLayout {
  uint64_t xa_head = 0;                     // in struct xarray
  uint64_t node_shift = 0, node_slots = 0;  // in struct xa_node
  uint32_t slot_count = 0;                  // XA_CHUNK_SIZE (64)
  static Result<XarrayLayout> of(const Types& types);
};

// Visits every present entry of the xarray at `xarray` (a struct xarray, e.g.
// idr.idr_rt), lower indices first, as `visit(index, entry)`: the stored pointer, with
// value entries and the xarray's internal entries (retry, zero, siblings) skipped.
// At most `max_entries` entries and as many nodes (a real node holds at least one
// entry), 64/6 levels; a node whose shift does not descend is a cycle.
template <typename Visit>
WalkResult walk_xarray(AddressSpace& space, const XarrayLayout& layout, uint64_t xarray,
                       size_t max_entries, Visit&& visit) {
  WalkResult r;
  uint64_t head = 0;
  if (!space.read(xarray + layout.xa_head, &head, sizeof head))
    return {0, WalkEnd::bad_pointer, xarray};
  // xa_is_node: an internal entry (low bits 10) above 4096.
  auto is_node = [](uint64_t e) { return (e & 3) == 2 && e > 4096; };
  auto is_pointer = [](uint64_t e) { return e != 0 && (e & 3) == 0; };
  if (!is_node(head)) {
    if (is_pointer(head)) {
      r.nodes = 1;
      visit(uint64_t{0}, head);
    }
    return r;
  }
  struct Frame {
    uint64_t node;
    uint64_t base;  // the first index this node covers
    unsigned shift;
  };
  std::vector<Frame> todo;
  std::vector<uint64_t> slots(layout.slot_count);
  const unsigned fanout_bits = static_cast<unsigned>(std::bit_width(layout.slot_count) - 1);
  auto push = [&](uint64_t entry, uint64_t base, int parent_shift) -> WalkEnd {
    const uint64_t node = entry - 2;
    if (!plausible_kernel_pointer(node)) return WalkEnd::bad_pointer;
    uint8_t shift = 0;
    if (!space.read(node + layout.node_shift, &shift, 1)) return WalkEnd::bad_pointer;
    // Each level goes down by the fanout: a node that does not is a loop or garbage.
    if (shift >= 64 || shift % fanout_bits != 0 ||
        (parent_shift >= 0 && shift + fanout_bits != static_cast<unsigned>(parent_shift)))
      return WalkEnd::cycle;
    todo.push_back({node, base, shift});
    return WalkEnd::complete;
  };
  if (WalkEnd e = push(head, 0, -1); e != WalkEnd::complete) return {0, e, head};
  size_t nodes_read = 0;
  while (!todo.empty()) {
    Frame f = todo.back();
    todo.pop_back();
    if (++nodes_read > max_entries) return {r.nodes, WalkEnd::limit, 0};
    if (!space.read(f.node + layout.node_slots, slots.data(), slots.size() * 8))
      return {r.nodes, WalkEnd::bad_pointer, f.node};
    std::vector<Frame> children;
    for (size_t i = 0; i < slots.size(); ++i) {
      const uint64_t entry = slots[i];
      const uint64_t index = f.base + (static_cast<uint64_t>(i) << f.shift);
      if (f.shift > 0 && is_node(entry)) {
        children.push_back({entry, index, f.shift});
      } else if (is_pointer(entry)) {  // above the leaves: one entry for a range of indices
        if (r.nodes >= max_entries) return {r.nodes, WalkEnd::limit, 0};
        ++r.nodes;
        if (!visit(index, entry)) return r;
      }
    }
    // Last-first onto the stack, so that lower indices come out first.
    for (size_t i = children.size(); i-- > 0;)
      if (WalkEnd e = push(children[i].node, children[i].base, static_cast<int>(f.shift));
          e != WalkEnd::complete)
        return {r.nodes, e, children[i].node};
  }
  return r;
}

}  // namespace nfm
