// Layouts of the kernel's tree nodes, from the guest's types.
#include "kernel/tree_walk.h"

#include <fmt/core.h>

namespace nfm {

Result<RbLayout> RbLayout::of(const Types& types) {
  RbLayout l;
  NFM_ASSIGN(Field left, types.member("rb_node", "rb_left"));
  NFM_ASSIGN(Field right, types.member("rb_node", "rb_right"));
  l.left = left.offset;
  l.right = right.offset;
  return l;
}

Result<XarrayLayout> XarrayLayout::of(const Types& types) {
  XarrayLayout l;
  NFM_ASSIGN(Field head, types.member("xarray", "xa_head"));
  NFM_ASSIGN(Field shift, types.member("xa_node", "shift"));
  NFM_ASSIGN(Field slots, types.member("xa_node", "slots"));
  NFM_ASSIGN(ArrayInfo array, types.array(slots.type));
  // XA_CHUNK_SIZE is 16 or 64 (a power of two), and the walker reads a node's slots at once.
  if (array.count < 2 || array.count > 256 || (array.count & (array.count - 1)) != 0)
    return make_error(Errc::unsupported, fmt::format("xa_node with {} slots", array.count));
  l.xa_head = head.offset;
  l.node_shift = shift.offset;
  l.node_slots = slots.offset;
  l.slot_count = array.count;
  return l;
}

}  // namespace nfm
