// Bounded, cycle-safe walks over a maple tree (lib/maple_tree.c, 6.1+): the
// tree that holds a process's VMAs (mm->mm_mt). Node layouts (pivot and slot
// counts, metadata) come from BTF; only the pointer encoding, which is not in
// the type data, is spelled out (include/linux/maple_tree.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "arch/address_space.h"
#include "arch/x86_64_paging.h"
#include "kernel/btf_types.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

struct MapleTreeLayout {
  uint64_t node_size = 0;  // struct maple_node
  // enum maple_type values
  int64_t type_dense = 0, type_leaf_64 = 0, type_range_64 = 0, type_arange_64 = 0;
  // struct maple_range_64 (leaves and internal nodes of plain trees) and
  // struct maple_arange_64 (internal nodes of allocation trees), from the node start.
  uint64_t r_pivot = 0, r_slot = 0, r_meta_end = 0;
  uint32_t r_pivots = 0, r_slots = 0;
  uint64_t a_pivot = 0, a_slot = 0, a_meta_end = 0;
  uint32_t a_pivots = 0, a_slots = 0;
};

// The layout, or an error on kernels without maple trees (before 6.1).
Result<MapleTreeLayout> maple_tree_layout(const Types& types);

// Visitor: a stored entry (non-NULL, not an internal marker) and the index
// range [first, last] it covers; return false to stop.
using MapleVisitor = FunctionRef<bool(uint64_t entry, uint64_t first, uint64_t last)>;

// Visits every entry of the tree whose ma_root holds `root` (the encoded root
// pointer), in index order. At most `max_nodes` nodes are read; depth is
// bounded by the maple tree's own maximum height. bad_pointer: an unreadable
// or malformed node; torn: a dead node (freed under us while the guest runs).
WalkResult walk_maple_tree(AddressSpace& space, const MapleTreeLayout& layout, uint64_t root,
                           size_t max_nodes, MapleVisitor visit);

}  // namespace nfm
