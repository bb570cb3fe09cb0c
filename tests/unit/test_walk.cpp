// Bounded, cycle-safe list walks over synthetic kernel lists.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "kernel/walk.h"
#include "word_space.h"

namespace nfm {
namespace {

constexpr uint64_t kBase = 0xffff888000000000ULL;

TEST(WalkList, VisitsEveryNodeInOrder) {
  WordSpace s;
  std::vector<uint64_t> nodes;
  for (int i = 1; i <= 50; ++i) nodes.push_back(kBase + static_cast<uint64_t>(i) * 0x100);
  s.make_list(kBase, nodes);
  std::vector<uint64_t> seen;
  auto r = walk_list(s, kBase, 1000, [&](uint64_t n) {
    seen.push_back(n);
    return true;
  });
  EXPECT_EQ(r.end, WalkEnd::complete);
  EXPECT_EQ(r.nodes, 50u);
  EXPECT_EQ(seen, nodes);
}

TEST(WalkList, EmptyList) {
  WordSpace s;
  s.make_list(kBase, {});
  auto r = walk_list(s, kBase, 10, [](uint64_t) { return true; });
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.nodes, 0u);
}

TEST(WalkList, StopsAtTheBound) {
  WordSpace s;
  std::vector<uint64_t> nodes;
  for (int i = 1; i <= 20; ++i) nodes.push_back(kBase + static_cast<uint64_t>(i) * 0x100);
  s.make_list(kBase, nodes);
  auto r = walk_list(s, kBase, 5, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::limit);
  EXPECT_EQ(r.nodes, 5u);
}

TEST(WalkList, DetectsALoopThatNeverReturnsToTheHead) {
  WordSpace s;
  // head -> a -> b -> c -> a ... with consistent prev pointers on the loop.
  const uint64_t h = kBase, a = kBase + 0x100, b = kBase + 0x200, c = kBase + 0x300;
  s.link(h, a, c);
  s.link(a, b, h);
  s.link(b, c, a);
  s.link(c, b, b);  // c->next = b, and b->prev would have to be c: torn or cycle
  auto r = walk_list(s, h, 1'000'000, [](uint64_t) { return true; });
  EXPECT_TRUE(r.end == WalkEnd::cycle || r.end == WalkEnd::torn) << walk_end_name(r.end);
  EXPECT_LT(r.nodes, 10u);
}

TEST(WalkList, DetectsASelfLoopWithConsistentBackLinks) {
  WordSpace s;
  const uint64_t h = kBase, a = kBase + 0x100;
  s.link(h, a, a);
  s.link(a, a, a);  // a points to itself both ways: prev check passes after the first step
  auto r = walk_list(s, h, 1'000'000, [](uint64_t) { return true; });
  EXPECT_NE(r.end, WalkEnd::complete);
  EXPECT_LT(r.nodes, 10u);
}

TEST(WalkList, RejectsBadPointers) {
  WordSpace s;
  s.link(kBase, 0x1234, kBase);  // user-space pointer in a kernel list
  auto r = walk_list(s, kBase, 10, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::bad_pointer);
  EXPECT_EQ(r.fault_address, 0x1234u);

  WordSpace u;
  u.link(kBase, kBase + 0x100, kBase);  // next is canonical but unmapped
  r = walk_list(u, kBase, 10, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::bad_pointer);
  EXPECT_EQ(r.fault_address, kBase + 0x100);
}

TEST(WalkList, DetectsATornList) {
  WordSpace s;
  const uint64_t h = kBase, a = kBase + 0x100, b = kBase + 0x200;
  s.link(h, a, b);
  s.link(a, b, h);
  s.link(b, h, kBase + 0x900);  // b->prev should be a
  auto r = walk_list(s, h, 10, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::torn);
  EXPECT_EQ(r.nodes, 1u);
}

TEST(WalkHlist, WalksUntilNullAndCatchesCycles) {
  WordSpace s;
  const uint64_t a = kBase + 0x100, b = kBase + 0x200, c = kBase + 0x300;
  s.words[a] = b;
  s.words[b] = c;
  s.words[c] = 0;
  std::vector<uint64_t> seen;
  auto r = walk_hlist(s, a, 100, [&](uint64_t n) {
    seen.push_back(n);
    return true;
  });
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(seen, (std::vector<uint64_t>{a, b, c}));

  s.words[c] = a;  // loop
  r = walk_hlist(s, a, 1'000'000, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::cycle);
  EXPECT_LT(r.nodes, 10u);

  // An odd link is a nulls marker in the other kind of list; here it is garbage.
  s.words[c] = 0x7;
  r = walk_hlist(s, a, 100, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::bad_pointer);
  EXPECT_EQ(r.fault_address, 0x7u);
  EXPECT_EQ(r.nodes, 3u);
}

TEST(WalkHlistNulls, EndsAtTheOddMarkerAndReportsIt) {
  WordSpace s;
  const uint64_t a = kBase + 0x100, b = kBase + 0x200;
  const uint64_t marker = (7u << 1) | 1;  // bucket 7's nulls value
  s.words[a] = b;
  s.words[b] = marker;
  std::vector<uint64_t> seen;
  uint64_t end = 0;
  auto r = walk_hlist_nulls(
      s, a, 100,
      [&](uint64_t n) {
        seen.push_back(n);
        return true;
      },
      &end);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(seen, (std::vector<uint64_t>{a, b}));
  EXPECT_EQ(end, marker);

  // An empty bucket holds only its marker.
  r = walk_hlist_nulls(
      s, marker, 100, [](uint64_t) { return true; }, &end);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.nodes, 0u);

  s.words[b] = a;  // loop
  r = walk_hlist_nulls(s, a, 1'000'000, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::cycle);

  s.words[b] = 0x1234;  // even, not a kernel pointer
  r = walk_hlist_nulls(s, a, 100, [](uint64_t) { return true; });
  EXPECT_EQ(r.end, WalkEnd::bad_pointer);
  EXPECT_EQ(r.nodes, 2u);
}

}  // namespace
}  // namespace nfm
