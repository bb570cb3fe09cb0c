// Maple tree walks over synthetic trees: order, ranges, and hostile shapes
// (cycles, dead nodes, garbage types) that must end the walk, never hang it.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "kernel/maple_tree.h"

namespace nfm {
namespace {

class WordSpace : public AddressSpace {
 public:
  std::map<uint64_t, uint64_t> words;
  Result<void> read(uint64_t va, void* dst, size_t len) override {
    auto* out = static_cast<uint8_t*>(dst);
    for (size_t i = 0; i < len; i += 8) {
      auto it = words.find(va + i);
      const uint64_t w = it == words.end() ? 0 : it->second;
      if (va + i < kBase) return fault_at(va + i, "unmapped");
      std::memcpy(out + i, &w, std::min<size_t>(8, len - i));
    }
    return {};
  }
  Result<uint64_t> translate(uint64_t va) override { return va; }
  static constexpr uint64_t kBase = 0xffff888000000000ULL;
};

// The x86-64 layout of 5.10-6.12's struct maple_node (what BTF gives there).
MapleTreeLayout layout() {
  MapleTreeLayout l;
  l.node_size = 256;
  l.type_dense = 0, l.type_leaf_64 = 1, l.type_range_64 = 2, l.type_arange_64 = 3;
  l.r_pivot = 8, l.r_slot = 128, l.r_meta_end = 248, l.r_pivots = 15, l.r_slots = 16;
  l.a_pivot = 8, l.a_slot = 80, l.a_meta_end = 240, l.a_pivots = 9, l.a_slots = 10;
  return l;
}

constexpr uint64_t kNodes = WordSpace::kBase + 0x10000;
uint64_t node_at(int i) {
  return kNodes + 256 * static_cast<uint64_t>(i);
}
uint64_t child(int i, int64_t type) {
  return node_at(i) | (type << 3) | 4;
}
uint64_t root(int i, int64_t type) {
  return node_at(i) | (type << 3) | 2;
}

// A leaf with entries (value, last index) after a start.
void make_leaf(WordSpace& s, int i, const std::vector<std::pair<uint64_t, uint64_t>>& slots,
               uint64_t parent) {
  const MapleTreeLayout l = layout();
  s.words[node_at(i)] = parent;
  for (size_t k = 0; k < slots.size(); ++k) {
    s.words[node_at(i) + l.r_slot + 8 * k] = slots[k].first;
    if (k < l.r_pivots) s.words[node_at(i) + l.r_pivot + 8 * k] = slots[k].second;
  }
  s.words[node_at(i) + l.r_meta_end] = slots.size() - 1;  // meta.end (a byte; gap above it 0)
}

using Entries = std::vector<std::tuple<uint64_t, uint64_t, uint64_t>>;

TEST(MapleTree, VisitsEntriesInOrderWithTheirRanges) {
  WordSpace s;
  const MapleTreeLayout l = layout();
  // Root: an arange node with two leaves, split at index 0x4fff.
  s.words[node_at(0)] = 0x1;  // parent: the tree (not a node)
  s.words[node_at(0) + l.a_pivot] = 0x4fff;
  s.words[node_at(0) + l.a_slot] = child(1, l.type_leaf_64);
  s.words[node_at(0) + l.a_slot + 8] = child(2, l.type_leaf_64);
  s.words[node_at(0) + l.a_meta_end] = 1;
  const uint64_t vma_a = WordSpace::kBase + 0x100, vma_b = WordSpace::kBase + 0x200,
                 vma_c = WordSpace::kBase + 0x300;
  make_leaf(s, 1, {{0, 0x0fff}, {vma_a, 0x1fff}, {0, 0x4fff}}, node_at(0));
  make_leaf(s, 2, {{vma_b, 0x5fff}, {0, 0x7fff}, {vma_c, 0x8fff}, {0, ~0ull}}, node_at(0));
  Entries seen;
  WalkResult r = walk_maple_tree(s, l, root(0, l.type_arange_64), 100,
                                 [&](uint64_t e, uint64_t first, uint64_t last) {
                                   seen.emplace_back(e, first, last);
                                   return true;
                                 });
  EXPECT_TRUE(r.ok()) << walk_end_name(r.end);
  EXPECT_EQ(r.nodes, 3u);
  EXPECT_EQ(seen,
            (Entries{{vma_a, 0x1000, 0x1fff}, {vma_b, 0x5000, 0x5fff}, {vma_c, 0x8000, 0x8fff}}));
}

TEST(MapleTree, AChildPointingBackAtTheRootEndsTheWalk) {
  WordSpace s;
  const MapleTreeLayout l = layout();
  s.words[node_at(0)] = 0x1;
  s.words[node_at(0) + l.a_slot] = child(0, l.type_arange_64);  // itself
  s.words[node_at(0) + l.a_meta_end] = 0;
  size_t visits = 0;
  WalkResult r = walk_maple_tree(s, l, root(0, l.type_arange_64), 1000,
                                 [&](uint64_t, uint64_t, uint64_t) { return ++visits, true; });
  EXPECT_EQ(r.end, WalkEnd::limit);
  EXPECT_LE(r.nodes, 32u);
  EXPECT_EQ(visits, 0u);
}

TEST(MapleTree, DeadNodesAndGarbageEndTheWalk) {
  const MapleTreeLayout l = layout();
  {
    WordSpace s;
    make_leaf(s, 0, {{WordSpace::kBase + 0x100, ~0ull}}, node_at(0));  // parent == self: dead
    WalkResult r = walk_maple_tree(s, l, root(0, l.type_leaf_64), 10,
                                   [](uint64_t, uint64_t, uint64_t) { return true; });
    EXPECT_EQ(r.end, WalkEnd::torn);
  }
  {
    WordSpace s;
    make_leaf(s, 0, {{WordSpace::kBase + 0x100, ~0ull}}, 0x1);
    WalkResult r = walk_maple_tree(s, l, root(0, 7), 10,  // no such node type
                                   [](uint64_t, uint64_t, uint64_t) { return true; });
    EXPECT_EQ(r.end, WalkEnd::bad_pointer);
  }
  {
    WordSpace s;
    make_leaf(s, 0, {{WordSpace::kBase + 0x100, 0x5000}, {0, 0x4000}}, 0x1);  // pivots go back
    s.words[node_at(0) + l.r_meta_end] = 1;
    WalkResult r = walk_maple_tree(s, l, root(0, l.type_leaf_64), 10,
                                   [](uint64_t, uint64_t, uint64_t) { return true; });
    EXPECT_EQ(r.end, WalkEnd::torn);
  }
  {
    WordSpace s;  // a root outside the kernel's half
    WalkResult r =
        walk_maple_tree(s, l, 0x12345602, 10, [](uint64_t, uint64_t, uint64_t) { return true; });
    EXPECT_EQ(r.end, WalkEnd::bad_pointer);
  }
}

TEST(MapleTree, AnEmptyTreeAndALoneRootEntry) {
  WordSpace s;
  const MapleTreeLayout l = layout();
  size_t visits = 0;
  auto count = [&](uint64_t, uint64_t, uint64_t) { return ++visits, true; };
  EXPECT_TRUE(walk_maple_tree(s, l, 0, 10, count).ok());
  EXPECT_EQ(visits, 0u);
  EXPECT_TRUE(walk_maple_tree(s, l, WordSpace::kBase + 0x100, 10, count).ok());
  EXPECT_EQ(visits, 1u);
}

}  // namespace
}  // namespace nfm
