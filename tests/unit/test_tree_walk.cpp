// Red-black tree and xarray walks over synthetic kernel trees, well-formed and
// hostile (loops, endless depth, shifts that do not descend).
#include <gtest/gtest.h>

#include <vector>

#include "kernel/tree_walk.h"
#include "word_space.h"

namespace nfm {
namespace {

constexpr uint64_t kBase = 0xffff888000000000ULL;
// struct rb_node: __rb_parent_color, rb_right, rb_left.
const RbLayout kRb{.left = 16, .right = 8};

// A balanced binary search tree over nodes[lo, hi): returns its root.
uint64_t build_tree(WordSpace& s, const std::vector<uint64_t>& nodes, size_t lo, size_t hi) {
  if (lo >= hi) return 0;
  const size_t mid = (lo + hi) / 2;
  const uint64_t n = nodes[mid];
  s.words[n] = 0;
  s.words[n + 8] = build_tree(s, nodes, mid + 1, hi);
  s.words[n + 16] = build_tree(s, nodes, lo, mid);
  return n;
}

std::vector<uint64_t> nodes_of(size_t count) {
  std::vector<uint64_t> nodes;
  for (size_t i = 0; i < count; ++i) nodes.push_back(kBase + 0x1000 + i * 0x40);
  return nodes;
}

TEST(WalkRbtree, VisitsEveryNodeInOrder) {
  WordSpace s;
  const auto nodes = nodes_of(100);
  const uint64_t root = build_tree(s, nodes, 0, nodes.size());
  std::vector<uint64_t> seen;
  WalkResult r = walk_rbtree(s, kRb, root, 1000, [&](uint64_t n) {
    seen.push_back(n);
    return true;
  });
  EXPECT_EQ(r.end, WalkEnd::complete);
  EXPECT_EQ(r.nodes, 100u);
  EXPECT_EQ(seen, nodes);
}

TEST(WalkRbtree, EmptyTreeAndEarlyStop) {
  WordSpace s;
  EXPECT_EQ(walk_rbtree(s, kRb, 0, 10, [](uint64_t) { return true; }).nodes, 0u);
  const auto nodes = nodes_of(10);
  const uint64_t root = build_tree(s, nodes, 0, nodes.size());
  size_t visits = 0;
  WalkResult r = walk_rbtree(s, kRb, root, 100, [&](uint64_t) { return ++visits < 3; });
  EXPECT_EQ(r.end, WalkEnd::complete);
  EXPECT_EQ(visits, 3u);
}

// A right child pointing back at the root loops without growing the path: the node
// budget ends it.
TEST(WalkRbtree, ALoopSpendsTheBudget) {
  WordSpace s;
  const auto nodes = nodes_of(7);
  const uint64_t root = build_tree(s, nodes, 0, nodes.size());
  s.words[nodes.back() + 8] = root;
  WalkResult r = walk_rbtree(s, kRb, root, 50, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::limit);
  EXPECT_EQ(r.nodes, 50u);
}

// A left child pointing back up grows the path without end: deeper than any real
// tree is a cycle.
TEST(WalkRbtree, AnEndlessLeftPathIsACycle) {
  WordSpace s;
  const auto nodes = nodes_of(3);
  const uint64_t root = build_tree(s, nodes, 0, nodes.size());
  s.words[nodes.front() + 16] = root;
  WalkResult r = walk_rbtree(s, kRb, root, 1 << 20, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::cycle);
  EXPECT_EQ(r.nodes, 0u);
}

TEST(WalkRbtree, BadPointersEndTheWalk) {
  WordSpace s;
  const auto nodes = nodes_of(3);
  const uint64_t root = build_tree(s, nodes, 0, nodes.size());
  s.words[nodes.back() + 8] = 0x1234;  // not a kernel address
  WalkResult r = walk_rbtree(s, kRb, root, 100, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::bad_pointer);
  EXPECT_EQ(r.fault_address, 0x1234u);
  EXPECT_EQ(r.nodes, 3u);
  s.words[nodes.back() + 8] = kBase + 0x900000;  // unmapped
  EXPECT_EQ(walk_rbtree(s, kRb, root, 100, [](uint64_t) { return true; }).end,
            WalkEnd::bad_pointer);
}

// struct xarray { lock; xa_flags; xa_head } and struct xa_node { shift (byte 0);
// ...; slots[4] at 16 }: a 4-slot xarray keeps the trees small.
const XarrayLayout kXa{.xa_head = 8, .node_shift = 0, .node_slots = 16, .slot_count = 4};
constexpr uint64_t kXarray = kBase;

uint64_t node_entry(uint64_t node) {
  return node | 2;
}
void make_node(WordSpace& s, uint64_t node, uint8_t shift, std::vector<uint64_t> slots) {
  s.words[node] = shift;
  s.words[node + 8] = 0;
  slots.resize(4);
  for (size_t i = 0; i < 4; ++i) s.words[node + 16 + i * 8] = slots[i];
}

std::vector<std::pair<uint64_t, uint64_t>> entries_of(WordSpace& s, WalkResult* result,
                                                      size_t max = 1000) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  WalkResult r = walk_xarray(s, kXa, kXarray, max, [&](uint64_t index, uint64_t entry) {
    out.emplace_back(index, entry);
    return true;
  });
  if (result) *result = r;
  return out;
}

TEST(WalkXarray, ASingleEntryLivesInTheHead) {
  WordSpace s;
  s.words[kXarray] = 0;
  s.words[kXarray + 8] = kBase + 0x5000;
  WalkResult r;
  EXPECT_EQ(entries_of(s, &r), (std::vector<std::pair<uint64_t, uint64_t>>{{0, kBase + 0x5000}}));
  EXPECT_EQ(r.end, WalkEnd::complete);
  s.words[kXarray + 8] = 0;
  EXPECT_TRUE(entries_of(s, &r).empty());
}

// Two levels: indices are (top slot << 2) + leaf slot; value entries (odd) and
// internal ones (retry, zero: low bits 10 below 4096) are not pointers.
TEST(WalkXarray, EntriesComeOutWithTheirIndices) {
  WordSpace s;
  const uint64_t top = kBase + 0x10000, leaf1 = kBase + 0x20000, leaf3 = kBase + 0x30000;
  const uint64_t a = kBase + 0x100, b = kBase + 0x200, c = kBase + 0x300;
  s.words[kXarray + 8] = node_entry(top);
  make_node(s, top, 2, {0, node_entry(leaf1), 0, node_entry(leaf3)});
  make_node(s, leaf1, 0, {a, 0x7 /* a value */, b, 0x402 /* XA_RETRY_ENTRY */});
  make_node(s, leaf3, 0, {0, 0, 0, c});
  WalkResult r;
  EXPECT_EQ(entries_of(s, &r),
            (std::vector<std::pair<uint64_t, uint64_t>>{{4, a}, {6, b}, {15, c}}));
  EXPECT_EQ(r.end, WalkEnd::complete);
  EXPECT_EQ(r.nodes, 3u);
}

// A node naming itself, or a child at its own level, would be walked for ever.
TEST(WalkXarray, ShiftsMustDescend) {
  WordSpace s;
  const uint64_t top = kBase + 0x10000, child = kBase + 0x20000;
  s.words[kXarray + 8] = node_entry(top);
  make_node(s, top, 2, {node_entry(top)});
  WalkResult r;
  entries_of(s, &r);
  EXPECT_EQ(r.end, WalkEnd::cycle);
  make_node(s, top, 2, {node_entry(child)});
  make_node(s, child, 2, {kBase + 0x100});
  entries_of(s, &r);
  EXPECT_EQ(r.end, WalkEnd::cycle);
  make_node(s, top, 3, {kBase + 0x100});  // not a multiple of the fanout's bits
  entries_of(s, &r);
  EXPECT_EQ(r.end, WalkEnd::cycle);
}

// Every slot of a wide tree naming the same leaf: the walk stops at its budget of
// entries (and of nodes, which real trees never exceed).
TEST(WalkXarray, ASharedLeafSpendsTheBudget) {
  WordSpace s;
  const uint64_t top = kBase + 0x10000, leaf = kBase + 0x20000;
  s.words[kXarray + 8] = node_entry(top);
  make_node(s, top, 2, {node_entry(leaf), node_entry(leaf), node_entry(leaf), node_entry(leaf)});
  make_node(s, leaf, 0, {kBase + 0x100, kBase + 0x200, kBase + 0x300, kBase + 0x400});
  WalkResult r;
  EXPECT_EQ(entries_of(s, &r, 6).size(), 6u);
  EXPECT_EQ(r.end, WalkEnd::limit);
  make_node(s, leaf, 0, {});  // empty leaves: the node budget ends it
  EXPECT_TRUE(entries_of(s, &r, 2).empty());
  EXPECT_EQ(r.end, WalkEnd::limit);
}

TEST(WalkXarray, AnUnreadableNodeIsABadPointer) {
  WordSpace s;
  s.words[kXarray + 8] = node_entry(kBase + 0x70000);
  WalkResult r;
  entries_of(s, &r);
  EXPECT_EQ(r.end, WalkEnd::bad_pointer);
}

}  // namespace
}  // namespace nfm
