#include "kernel/maple_tree.h"

#include <cstring>
#include <vector>

namespace nfm {

namespace {

// include/linux/maple_tree.h, lib/maple_tree.c: a node pointer ("enode") is
// 256-byte aligned and carries its type in bits 3-6 (and MAPLE_ENODE_NULL, bit 2,
// in child slots); the root is marked as an xarray internal entry (binary 10).
constexpr uint64_t kNodeMask = 255;
constexpr unsigned kTypeShift = 3;
constexpr uint64_t kTypeMask = 0x0f;
constexpr int kHeightMax = 31;  // MAPLE_HEIGHT_MAX
constexpr uint64_t kReservedRange = 4096;

bool is_internal(uint64_t entry) {
  return (entry & 3) == 2;
}
bool is_node(uint64_t entry) {
  return is_internal(entry) && entry > kReservedRange;
}

struct Walker {
  AddressSpace& space;
  const MapleTreeLayout& l;
  size_t max_nodes;
  MapleVisitor& visit;
  WalkResult result;
  bool stopped = false;

  uint64_t load(const std::vector<uint8_t>& node, uint64_t offset) const {
    uint64_t v = 0;
    if (offset + 8 <= node.size()) std::memcpy(&v, node.data() + offset, 8);
    return v;
  }

  // Visits the subtree of `entry` covering [min, max]; false ends the walk.
  bool walk(uint64_t entry, uint64_t min, uint64_t max, int depth) {
    if (depth > kHeightMax) return fail(WalkEnd::limit, entry);
    if (result.nodes >= max_nodes) return fail(WalkEnd::limit, 0);
    const uint64_t addr = entry & ~kNodeMask;
    const auto type = static_cast<int64_t>((entry >> kTypeShift) & kTypeMask);
    if (!plausible_kernel_pointer(addr, 256)) return fail(WalkEnd::bad_pointer, addr);
    std::vector<uint8_t> node(l.node_size);
    if (!space.read(addr, node.data(), node.size())) return fail(WalkEnd::bad_pointer, addr);
    ++result.nodes;
    // ma_dead_node(): a freed node's parent points at itself.
    if ((load(node, 0) & ~kNodeMask) == addr) return fail(WalkEnd::torn, addr);

    const bool leaf = type == l.type_leaf_64;
    const bool arange = type == l.type_arange_64;
    if (!leaf && !arange && type != l.type_range_64) return fail(WalkEnd::bad_pointer, entry);
    const uint64_t pivot_off = arange ? l.a_pivot : l.r_pivot;
    const uint64_t slot_off = arange ? l.a_slot : l.r_slot;
    const uint32_t pivots = arange ? l.a_pivots : l.r_pivots;
    const uint32_t slots = arange ? l.a_slots : l.r_slots;
    const uint8_t meta_end = node[arange ? l.a_meta_end : l.r_meta_end];

    // ma_data_end(): the last used slot. A full range node has no room for
    // metadata; its last pivot tells.
    uint32_t end;
    const uint64_t last_pivot = load(node, pivot_off + (pivots - 1) * 8);
    if (arange || last_pivot == 0)
      end = meta_end;
    else if (last_pivot == max)
      end = pivots - 1;
    else
      end = pivots;
    if (end >= slots) return fail(WalkEnd::bad_pointer, addr);

    uint64_t first = min;
    for (uint32_t i = 0; i <= end; ++i) {
      // mas_logical_pivot(): past the pivots, or a 0 pivot after the first, is the node's max.
      uint64_t last = i < pivots ? load(node, pivot_off + i * 8) : max;
      if (last == 0 && i > 0) last = max;
      if (last < first || last > max) return fail(WalkEnd::torn, addr);
      const uint64_t slot = load(node, slot_off + i * 8);
      if (leaf) {
        if (slot && !is_internal(slot) && !visit(slot, first, last)) {
          stopped = true;
          return false;
        }
      } else if (slot) {
        if (!walk(slot, first, last, depth + 1)) return false;
      }
      if (last == max) break;
      first = last + 1;
    }
    return true;
  }

  bool fail(WalkEnd end, uint64_t address) {
    result.end = end;
    result.fault_address = address;
    return false;
  }
};

Result<uint32_t> array_count(const Types& t, const Field& f) {
  NFM_ASSIGN(ArrayInfo a, t.array(f.type));
  return a.count;
}

}  // namespace

Result<MapleTreeLayout> maple_tree_layout(const Types& t) {
  MapleTreeLayout l;
  NFM_ASSIGN(l.node_size, t.size_of("maple_node"));
  NFM_ASSIGN(l.type_dense, t.enum_value("maple_type", "maple_dense"));
  NFM_ASSIGN(l.type_leaf_64, t.enum_value("maple_type", "maple_leaf_64"));
  NFM_ASSIGN(l.type_range_64, t.enum_value("maple_type", "maple_range_64"));
  NFM_ASSIGN(l.type_arange_64, t.enum_value("maple_type", "maple_arange_64"));
  NFM_ASSIGN(Field rp, t.member("maple_node", "mr64.pivot"));
  NFM_ASSIGN(Field rs, t.member("maple_node", "mr64.slot"));
  NFM_ASSIGN(Field rm, t.member("maple_node", "mr64.meta.end"));
  NFM_ASSIGN(Field ap, t.member("maple_node", "ma64.pivot"));
  NFM_ASSIGN(Field as, t.member("maple_node", "ma64.slot"));
  NFM_ASSIGN(Field am, t.member("maple_node", "ma64.meta.end"));
  l.r_pivot = rp.offset, l.r_slot = rs.offset, l.r_meta_end = rm.offset;
  l.a_pivot = ap.offset, l.a_slot = as.offset, l.a_meta_end = am.offset;
  NFM_ASSIGN(l.r_pivots, array_count(t, rp));
  NFM_ASSIGN(l.r_slots, array_count(t, rs));
  NFM_ASSIGN(l.a_pivots, array_count(t, ap));
  NFM_ASSIGN(l.a_slots, array_count(t, as));
  if (l.r_pivots == 0 || l.a_pivots == 0 || l.r_slots <= l.r_pivots || l.a_slots <= l.a_pivots ||
      l.r_meta_end >= l.node_size || l.a_meta_end >= l.node_size)
    return make_error(Errc::bad_format, "maple_node layout is not what the walker expects");
  return l;
}

WalkResult walk_maple_tree(AddressSpace& space, const MapleTreeLayout& layout, uint64_t root,
                           size_t max_nodes, MapleVisitor visit) {
  Walker w{space, layout, max_nodes, visit, {}};
  if (root == 0) return w.result;
  if (!is_node(root)) {
    // A lone entry for index 0 lives in the root itself.
    if (!is_internal(root)) visit(root, 0, 0);
    return w.result;
  }
  w.walk(root, 0, ~uint64_t{0}, 0);
  return w.result;
}

}  // namespace nfm
