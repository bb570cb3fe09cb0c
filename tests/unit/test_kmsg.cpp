// The printk ring decoder (features/kmsg.h): lpos/id arithmetic, and whole
// synthetic rings written the way kernel/printk/printk_ringbuffer.c writes
// them, including text and descriptor wrap-around, in-flight and torn records.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "features/kmsg/kmsg.h"

namespace nfm {
namespace {

using namespace printk_ring;

// ---- lpos and id arithmetic ---------------------------------------------

TEST(PrintkRing, DescState) {
  const uint64_t id = 0x1234;
  EXPECT_EQ(desc_state(id, id), DescState::reserved);
  EXPECT_EQ(desc_state(id, id | 1ull << 62), DescState::committed);
  EXPECT_EQ(desc_state(id, id | 2ull << 62), DescState::finalized);
  EXPECT_EQ(desc_state(id, id | 3ull << 62), DescState::reusable);
  EXPECT_EQ(desc_state(id + 64, id | 2ull << 62), DescState::miss);  // slot recycled
  EXPECT_EQ(desc_id(kIdMask | 3ull << 62), kIdMask);
}

TEST(PrintkRing, RegularBlock) {
  // 4 KiB ring, block of id + 20 bytes text + 4 padding at index 0x100 of wrap 5.
  const uint64_t begin = 5 * 4096 + 0x100;
  Block b = locate_block(12, begin, begin + 32);
  EXPECT_EQ(b.kind, BlockKind::data);
  EXPECT_EQ(b.offset, 0x100u);
  EXPECT_EQ(b.size, 24u);
}

TEST(PrintkRing, WrappedBlockLivesAtTheStart) {
  // The block would cross the end: only its id stays at `begin`, the whole
  // block is stored again from index 0, and `next` is in the following wrap.
  const uint64_t begin = 5 * 4096 + 4096 - 16;
  Block b = locate_block(12, begin, 6 * 4096 + 48);
  EXPECT_EQ(b.kind, BlockKind::data);
  EXPECT_EQ(b.offset, 0u);
  EXPECT_EQ(b.size, 40u);
}

TEST(PrintkRing, BlockEndingExactlyAtTheEndIsRegular) {
  // Since 2025 a writer no longer wraps a block that just fits.
  const uint64_t begin = 5 * 4096 + 4096 - 48;
  Block b = locate_block(12, begin, 6 * 4096);
  EXPECT_EQ(b.kind, BlockKind::data);
  EXPECT_EQ(b.offset, 4096u - 48);
  EXPECT_EQ(b.size, 40u);
}

TEST(PrintkRing, LposOverflowsAtTwoToThe64) {
  // BLK0_LPOS = -ring: the first wrap overflows the 64-bit lpos to 0.
  const uint64_t ring = 4096, begin = 0 - ring + 4096 - 16;
  Block b = locate_block(12, begin, 48);  // wrapped across the overflow
  EXPECT_EQ(b.kind, BlockKind::data);
  EXPECT_EQ(b.offset, 0u);
  EXPECT_EQ(b.size, 40u);
  b = locate_block(12, 0 - ring, 0 - ring + 64);  // first block of all
  EXPECT_EQ(b.kind, BlockKind::data);
  EXPECT_EQ(b.offset, 0u);
  b = locate_block(12, 0 - 64, 0);  // ends exactly at the overflow
  EXPECT_EQ(b.kind, BlockKind::data);
  EXPECT_EQ(b.offset, ring - 64);
  EXPECT_EQ(b.size, 56u);
}

TEST(PrintkRing, DatalessAndInvalidBlocks) {
  EXPECT_EQ(locate_block(12, 3, 3).kind, BlockKind::empty);  // EMPTY_LINE_LPOS / NO_LPOS
  EXPECT_EQ(locate_block(12, 1, 1).kind, BlockKind::lost);   // FAILED_LPOS
  EXPECT_EQ(locate_block(12, 4096 + 8, 4096 + 8).kind, BlockKind::invalid);   // zero size
  EXPECT_EQ(locate_block(12, 4096 + 4, 4096 + 40).kind, BlockKind::invalid);  // misaligned
  EXPECT_EQ(locate_block(12, 4096 + 1, 4096 + 40).kind, BlockKind::invalid);  // half data-less
  EXPECT_EQ(locate_block(12, 4096, 4096 + 4096).kind,
            BlockKind::invalid);  // no room for the next id
  EXPECT_EQ(locate_block(12, 4096, 3 * 4096 + 64).kind, BlockKind::invalid);   // two wraps apart
  EXPECT_EQ(locate_block(12, 4096 + 64, 4096 + 32).kind, BlockKind::invalid);  // backwards
  EXPECT_EQ(locate_block(12, 4096 + 4000, 2 * 4096).kind, BlockKind::data);
  EXPECT_EQ(locate_block(12, 2 * 4096 - 8, 2 * 4096 + 0).kind,
            BlockKind::data);                                   // id only, empty text
  EXPECT_EQ(locate_block(70, 0, 64).kind, BlockKind::invalid);  // absurd ring size
}

// ---- synthetic rings --------------------------------------------------------

constexpr uint64_t kRb = 0xffffffff82000000ull;
constexpr uint64_t kDescs = 0xffff888001000000ull;
constexpr uint64_t kInfos = 0xffff888002000000ull;
constexpr uint64_t kData = 0xffff888003000000ull;

// The 6.x x86-64 layout (struct printk_ringbuffer, prb_desc, printk_info).
Layout test_layout() {
  auto s = [](uint64_t off, uint64_t size) { return Slot{off, size, 0, 0, true}; };
  Layout l;
  l.rb_size = 88;
  l.count_bits = s(0, 4);
  l.descs = s(8, 8);
  l.infos = s(16, 8);
  l.head_id = s(24, 8);
  l.tail_id = s(32, 8);
  l.size_bits = s(48, 4);
  l.data = s(56, 8);
  l.desc_size = 24;
  l.state_var = s(0, 8);
  l.blk_begin = s(8, 8);
  l.blk_next = s(16, 8);
  l.info_size = 88;
  l.seq = s(0, 8);
  l.ts_nsec = s(8, 8);
  l.text_len = s(16, 2);
  l.facility = s(18, 1);
  l.flags = Slot{19, 1, 0, 5, true};  // u8 flags:5
  l.level = Slot{19, 1, 5, 3, true};  // u8 level:3
  l.caller_id = s(20, 4);
  l.subsystem = s(24, 16);
  l.device = s(40, 48);
  return l;
}

// A virtual address space of byte regions; pages can be made unreadable, and
// a hook runs before each read (to play a concurrent writer).
class ByteSpace : public AddressSpace {
 public:
  std::map<uint64_t, std::vector<uint8_t>> regions;
  std::set<uint64_t> bad_pages;
  std::function<void(uint64_t va)> before_read;

  uint8_t* at(uint64_t va) {
    for (auto& [base, bytes] : regions)
      if (va >= base && va < base + bytes.size()) return bytes.data() + (va - base);
    return nullptr;
  }
  Result<void> read(uint64_t va, void* dst, size_t len) override {
    if (before_read) before_read(va);
    for (uint64_t p = va & ~4095ull; p < va + len; p += 4096)
      if (bad_pages.count(p)) return fault_at(p, "bad page");
    for (auto& [base, bytes] : regions)
      if (va >= base && va + len <= base + bytes.size()) {
        std::memcpy(dst, bytes.data() + (va - base), len);
        return {};
      }
    return fault_at(va, "unmapped");
  }
  Result<uint64_t> translate(uint64_t va) override { return va; }
  template <typename T>
  void put(uint64_t va, T v) {
    std::memcpy(at(va), &v, sizeof v);
  }
};

// Writes records like prb_reserve() + prb_final_commit() do, keeping track of
// which records are still readable.
class RingWriter {
 public:
  RingWriter(ByteSpace& space, unsigned count_bits, unsigned size_bits)
      : s_(space), count_(1ull << count_bits), ring_(1ull << size_bits) {
    s_.regions[kRb].resize(88);
    s_.regions[kDescs].resize(count_ * 24);
    s_.regions[kInfos].resize(count_ * 88);
    s_.regions[kData].resize(ring_);
    s_.put<uint32_t>(kRb + 0, count_bits);
    s_.put(kRb + 8, kDescs);
    s_.put(kRb + 16, kInfos);
    s_.put<uint32_t>(kRb + 48, size_bits);
    s_.put(kRb + 56, kData);
    // Bootstrap (DEFINE_PRINTKRB): head = tail = the last descriptor, reusable
    // and data-less; lpos starts one ring before 0 so that it overflows soon.
    head_id_ = tail_id_ = (0 - (count_ + 1)) & kIdMask;
    s_.put(desc(head_id_), head_id_ | 3ull << 62);
    s_.put(desc(head_id_) + 8, uint64_t{1});
    s_.put(desc(head_id_) + 16, uint64_t{1});
    head_lpos_ = tail_lpos_ = 0 - ring_;
    sync();
  }

  uint64_t desc(uint64_t id) const { return kDescs + (id & (count_ - 1)) * 24; }
  uint64_t info(uint64_t id) const { return kInfos + (id & (count_ - 1)) * 88; }

  // Returns the new record's id. `final` false leaves it committed, `reserved`
  // leaves it reserved (a writer still at work).
  uint64_t append(const std::string& text, unsigned level = 6, bool final = true,
                  bool reserved = false) {
    const uint64_t id = (head_id_ + 1) & kIdMask;
    if (((id - tail_id_) & kIdMask) >= count_) {  // desc_push_tail()
      s_.put(desc(tail_id_), tail_id_ | 3ull << 62);
      if (!live_.empty() && live_.front().id == tail_id_) drop_front();
      tail_id_ = (tail_id_ + 1) & kIdMask;
    }
    uint64_t begin = 3, next = 3;  // data-less empty line
    if (!text.empty()) {
      const uint64_t size = (8 + text.size() + 7) & ~7ull;  // to_blk_size()
      begin = head_lpos_;
      next = begin + size;
      bool wrapped = false;
      if ((begin >> bits(ring_)) != ((next - 1) >> bits(ring_))) {  // get_next_lpos()
        next = (next & ~(ring_ - 1)) + size;
        wrapped = true;
      }
      while (next - tail_lpos_ > ring_) {  // data_push_tail(): make old records reusable
        s_.put(desc(live_.front().id), live_.front().id | 3ull << 62);
        tail_lpos_ = live_.front().next;
        drop_front();
      }
      s_.put(kData + (begin & (ring_ - 1)), id);
      const uint64_t at = wrapped ? 0 : begin & (ring_ - 1);
      s_.put(kData + at, id);
      std::memcpy(s_.at(kData + at + 8), text.data(), text.size());
      head_lpos_ = next;
    }
    s_.put(desc(id) + 8, begin);
    s_.put(desc(id) + 16, next);
    const uint64_t i = info(id);
    s_.put(i + 0, seq_);
    s_.put(i + 8, seq_ * 1000 + 7);
    s_.put<uint16_t>(i + 16, static_cast<uint16_t>(text.size()));
    s_.put<uint8_t>(i + 18, 0);
    s_.put<uint8_t>(i + 19, static_cast<uint8_t>(level << 5 | 2));
    s_.put<uint32_t>(i + 20, 0x80000000u);
    std::memset(s_.at(i + 24), 0, 64);
    s_.put(desc(id), id | (reserved ? 0 : final ? 2ull : 1ull) << 62);
    head_id_ = id;
    if (!reserved) live_.push_back({id, seq_, next, text});
    ++seq_;
    sync();
    return id;
  }

  struct Live {
    uint64_t id, seq, next;
    std::string text;
  };
  const std::deque<Live>& live() const { return live_; }

 private:
  static unsigned bits(uint64_t v) { return static_cast<unsigned>(__builtin_ctzll(v)); }
  void drop_front() { live_.pop_front(); }
  void sync() {
    s_.put(kRb + 24, head_id_);
    s_.put(kRb + 32, tail_id_);
    s_.put(kRb + 64, head_lpos_);
    s_.put(kRb + 72, tail_lpos_);
  }

  ByteSpace& s_;
  uint64_t count_, ring_;
  uint64_t head_id_, tail_id_, head_lpos_, tail_lpos_;
  uint64_t seq_ = 0;
  std::deque<Live> live_;
};

std::vector<std::string> texts(const KmsgLog& log) {
  std::vector<std::string> v;
  for (auto& r : log.records) v.push_back(r.text);
  return v;
}

TEST(PrintkRing, ReadsEveryRecordOfAFreshRing) {
  ByteSpace s;
  RingWriter w(s, 6, 12);
  w.append("Linux version 6.12", 5);
  w.append("", 6);  // an empty line has no data block
  w.append("two\nlines", 4);
  w.append("pending", 6, /*final=*/false);  // committed, not yet finalized: readable
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok()) << log.error().to_string();
  EXPECT_EQ(texts(*log),
            (std::vector<std::string>{"Linux version 6.12", "", "two\nlines", "pending"}));
  ASSERT_EQ(log->records.size(), 4u);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(log->records[i].seq, i);
    EXPECT_EQ(log->records[i].ts_ns, i * 1000 + 7);
  }
  EXPECT_EQ(log->records[0].level, 5);
  EXPECT_EQ(log->records[0].flags, 2);
  EXPECT_EQ(log->records[2].level, 4);
  EXPECT_EQ(log->records[0].caller(), "C0");
  EXPECT_TRUE(log->records[0].finalized);
  EXPECT_FALSE(log->records[3].finalized);
  EXPECT_EQ(log->lost, 1u);  // the bootstrap descriptor
  EXPECT_EQ(log->in_flight + log->torn + log->unreadable, 0u);
  EXPECT_EQ(log->ring_records, 64u);
  EXPECT_EQ(log->ring_bytes, 4096u);
}

// The crawl's page cache serves a snapshot; the descriptors are re-read past it.
// Records whose descriptors the guest rewrote meanwhile are skipped as in flight,
// never reported with the old text.
TEST(PrintkRing, RecheckSeesDescriptorsTheGuestRewroteSinceTheFirstRead) {
  ByteSpace live;
  RingWriter w(live, 4, 12);  // 16 descriptors
  for (int i = 0; i < 10; ++i) w.append("old " + std::to_string(i));
  const std::vector<RingWriter::Live> old(w.live().begin(), w.live().end());
  ByteSpace cached = live;  // what the cache holds: the ring as first read
  for (int i = 0; i < 8; ++i) w.append("new " + std::to_string(i));  // the guest goes on
  std::set<uint64_t> rewritten;  // descriptor slots the new records took
  for (const auto& l : w.live())
    if (l.text.rfind("new ", 0) == 0) rewritten.insert(l.id & 15);
  std::vector<std::string> want;
  for (const auto& l : old)
    if (!rewritten.count(l.id & 15)) want.push_back(l.text);
  ASSERT_LT(want.size(), old.size());

  // Without a second look past the cache the stale view is all consistent.
  auto stale = read_ring(cached, kRb, test_layout(), {});
  ASSERT_TRUE(stale.ok()) << stale.error().to_string();
  EXPECT_EQ(stale->records.size(), old.size());

  auto log = read_ring(cached, kRb, test_layout(), {}, &live);
  ASSERT_TRUE(log.ok()) << log.error().to_string();
  EXPECT_EQ(texts(*log), want);
  EXPECT_GE(log->in_flight, old.size() - want.size());
}

TEST(PrintkRing, TextRingWrapsManyTimes) {
  ByteSpace s;
  RingWriter w(s, 8, 10);  // 256 descriptors, 1 KiB of text: the text ring wraps first
  for (int i = 0; i < 500; ++i) w.append("record " + std::to_string(i) + std::string(i % 37, 'x'));
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok()) << log.error().to_string();
  std::vector<std::string> want;
  for (auto& l : w.live()) want.push_back(l.text);
  EXPECT_EQ(texts(*log), want);
  EXPECT_LT(want.size(), 60u);
  EXPECT_EQ(log->records.back().seq, 499u);
  EXPECT_EQ(log->in_flight + log->torn + log->unreadable, 0u);
  EXPECT_GT(log->lost, 0u);  // still-listed descriptors whose text was overwritten
}

TEST(PrintkRing, DescriptorRingWraps) {
  ByteSpace s;
  RingWriter w(s, 4, 16);  // 16 descriptors, 64 KiB of text: descriptors run out first
  for (int i = 0; i < 100; ++i) w.append("message " + std::to_string(i));
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok()) << log.error().to_string();
  ASSERT_EQ(log->records.size(), 16u);
  EXPECT_EQ(log->records.front().seq, 84u);
  EXPECT_EQ(log->records.front().text, "message 84");
  EXPECT_EQ(log->records.back().text, "message 99");
  EXPECT_EQ(log->lost + log->in_flight + log->torn, 0u);
}

TEST(PrintkRing, SkipsAndCountsARecordBeingWritten) {
  ByteSpace s;
  RingWriter w(s, 6, 12);
  w.append("one");
  w.append("two");
  w.append("half-writ", 6, true, /*reserved=*/true);
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(texts(*log), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(log->in_flight, 1u);
}

TEST(PrintkRing, ARecordThatChangesWhileWeReadIsSkipped) {
  ByteSpace s;
  RingWriter w(s, 6, 12);
  w.append("one");
  const uint64_t two = w.append("two", 6, /*final=*/false);
  w.append("three");
  // A writer reopens "two" (prb_reserve_in_last) while we read the text.
  s.before_read = [&](uint64_t va) {
    if (va == kData) s.put(w.desc(two), two);
  };
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(texts(*log), (std::vector<std::string>{"one", "three"}));
  EXPECT_EQ(log->in_flight, 1u);
}

TEST(PrintkRing, TornRecordsAreSkippedAndCounted) {
  ByteSpace s;
  RingWriter w(s, 6, 12);
  const uint64_t a = w.append("alpha");
  const uint64_t b = w.append("bravo");
  const uint64_t c = w.append("charlie");
  const uint64_t d = w.append("delta");
  w.append("echo");
  uint64_t begin = 0;
  std::memcpy(&begin, s.at(w.desc(a) + 8), 8);
  s.put<uint64_t>(kData + (begin & 4095), a + 1);          // the block carries another id
  s.put<uint16_t>(w.info(b) + 16, 200);                    // text_len beyond the block
  s.put<uint64_t>(w.info(c), 12345);                       // seq in the wrong slot
  s.put<uint64_t>(w.desc(d) + 16, 0xffffffffffff0000ull);  // nonsense lpos
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(texts(*log), (std::vector<std::string>{"echo"}));
  EXPECT_EQ(log->torn, 4u);
}

TEST(PrintkRing, UnreadableTextCostsOnlyItsRecords) {
  ByteSpace s;
  RingWriter w(s, 6, 13);  // two pages of text
  for (int i = 0; i < 60; ++i) w.append("line " + std::to_string(i) + std::string(80, '.'));
  s.bad_pages.insert(kData + 4096);
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok());
  EXPECT_GT(log->unreadable, 0u);
  EXPECT_GT(log->records.size(), 10u);
  EXPECT_EQ(log->records.size() + log->unreadable, w.live().size());
}

TEST(PrintkRing, HostileHeadersAreBounded) {
  ByteSpace s;
  RingWriter w(s, 6, 12);
  w.append("one");
  // head and tail far apart: at most 2^count_bits ids are visited.
  s.put<uint64_t>(kRb + 32, 5);
  auto log = read_ring(s, kRb, test_layout(), {});
  ASSERT_TRUE(log.ok());
  EXPECT_GE(log->torn, 1u);
  // Sizes that would make us allocate without bound are refused.
  s.put<uint32_t>(kRb + 0, 40);
  EXPECT_EQ(read_ring(s, kRb, test_layout(), {}).error().code, Errc::limit);
  s.put<uint32_t>(kRb + 0, 6);
  s.put<uint32_t>(kRb + 48, 45);
  EXPECT_EQ(read_ring(s, kRb, test_layout(), {}).error().code, Errc::limit);
  s.put<uint32_t>(kRb + 48, 12);
  s.put<uint64_t>(kRb + 8, 0x1000);  // descs: not a kernel pointer
  EXPECT_FALSE(read_ring(s, kRb, test_layout(), {}).ok());
}

}  // namespace
}  // namespace nfm
