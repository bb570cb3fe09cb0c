// BtfView on small hand-built blobs: what it reads, and each malformed blob it
// refuses (by its message). Real kernels' BTF against libbpf: test_btf_types.cpp.
#include <gtest/gtest.h>
#include <linux/btf.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernel/btf_view.h"

namespace nfm {
namespace {

// An int's extra word (the kernel's BTF_INT_ENC, which no uapi header exports).
constexpr uint32_t int_encoding(uint32_t encoding, uint32_t offset, uint32_t bits) {
  return (encoding << 24) | (offset << 16) | bits;
}

// A blob: header, types (32-bit words), strings. Kept in 64-bit words, aligned
// as a mapped cache file holds it.
struct Blob {
  std::vector<uint32_t> types;
  std::string strings{'\0'};
  std::vector<uint64_t> storage;
  size_t size = 0;

  uint32_t add_string(const std::string& s) {
    const auto at = static_cast<uint32_t>(strings.size());
    strings += s;
    strings += '\0';
    return at;
  }
  void add_type(uint32_t name_off, uint32_t kind, uint32_t vlen, uint32_t size_or_type) {
    types.insert(types.end(), {name_off, (kind << 24) | vlen, size_or_type});
  }
  std::span<const uint8_t> bytes(const std::function<void(btf_header&)>& doctor = {}) {
    btf_header h{};
    h.magic = BTF_MAGIC;
    h.version = BTF_VERSION;
    h.hdr_len = sizeof h;
    h.type_off = 0;
    h.type_len = static_cast<uint32_t>(types.size() * 4);
    h.str_off = h.type_len;
    h.str_len = static_cast<uint32_t>(strings.size());
    if (doctor) doctor(h);
    size = sizeof h + types.size() * 4 + strings.size();
    storage.assign((size + 7) / 8, 0);
    auto* p = reinterpret_cast<uint8_t*>(storage.data());
    std::memcpy(p, &h, sizeof h);
    std::memcpy(p + sizeof h, types.data(), types.size() * 4);
    std::memcpy(p + sizeof h + types.size() * 4, strings.data(), strings.size());
    return {p, size};
  }
};

// int (4 bytes), int *, int[10], struct pair { int a; int *b; }, typedef pair_t.
Blob sample() {
  Blob b;
  b.add_type(b.add_string("int"), BTF_KIND_INT, 0, 4);
  b.types.push_back(int_encoding(BTF_INT_SIGNED, 0, 32));
  b.add_type(0, BTF_KIND_PTR, 0, 1);
  b.add_type(0, BTF_KIND_ARRAY, 0, 0);
  b.types.insert(b.types.end(), {1, 1, 10});  // element int, index int, 10 elements
  b.add_type(b.add_string("pair"), BTF_KIND_STRUCT, 2, 16);
  b.types.insert(b.types.end(), {b.add_string("a"), 1, 0});
  b.types.insert(b.types.end(), {b.add_string("b"), 2, 64});
  b.add_type(b.add_string("pair_t"), BTF_KIND_TYPEDEF, 0, 4);
  return b;
}

TEST(BtfView, ReadsRecordsNamesAndSizes) {
  Blob b = sample();
  auto v = BtfView::open(b.bytes());
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->type_count(), 6u);
  EXPECT_EQ(v->type(0), nullptr);
  EXPECT_EQ(v->type(6), nullptr);
  ASSERT_NE(v->type(4), nullptr);
  EXPECT_EQ(v->str(v->type(4)->name_off), "pair");
  EXPECT_EQ(btf_vlen(v->type(4)), 2u);
  EXPECT_EQ(v->str(btf_members(v->type(4))[1].name_off), "b");
  EXPECT_EQ(v->resolve_size(1), 4);
  EXPECT_EQ(v->resolve_size(2), 8);   // a pointer
  EXPECT_EQ(v->resolve_size(3), 40);  // int[10]
  EXPECT_EQ(v->resolve_size(5), 16);  // through the typedef
  EXPECT_EQ(v->resolve_size(0), -1);  // void
  EXPECT_EQ(v->str(1u << 30), "");
}

TEST(BtfView, SplitBlobContinuesTheBaseIdsAndStrings) {
  Blob base = sample();
  auto bv = BtfView::open(base.bytes());
  ASSERT_TRUE(bv);
  Blob split;
  split.strings.clear();
  split.strings += '\0';  // offsets continue after the base's strings
  const auto name = static_cast<uint32_t>(base.strings.size()) + split.add_string("mod_t");
  split.add_type(name, BTF_KIND_TYPEDEF, 0, 3);  // a typedef of the base's int[10]
  auto v = BtfView::open(split.bytes(), &*bv);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->type_count(), 7u);
  EXPECT_EQ(v->str(v->type(6)->name_off), "mod_t");
  EXPECT_EQ(v->str(v->type(4)->name_off), "pair");  // the base's, through the split view
  EXPECT_EQ(v->resolve_size(6), 40);
}

TEST(BtfView, RefusesMalformedBlobs) {
  auto message = [](std::span<const uint8_t> bytes) {
    auto v = BtfView::open(bytes);
    return v ? std::string("accepted") : v.error().message;
  };
  {
    Blob b = sample();
    EXPECT_EQ(message(b.bytes().first(10)), "BTF: 10 bytes: no header");
    EXPECT_EQ(message(b.bytes([](btf_header& h) { h.magic = 0x9feb; })), "BTF: bad magic 0x9feb");
    EXPECT_EQ(message(b.bytes([](btf_header& h) { h.str_len += 1; })),
              "BTF: a section lies past the end of the blob");
    EXPECT_EQ(message(b.bytes([](btf_header& h) { h.type_len -= 4; })), "BTF: type 5 is cut short");
  }
  {
    Blob b = sample();
    b.strings.back() = 'x';
    EXPECT_EQ(message(b.bytes()), "BTF: the string section does not end with a NUL");
  }
  {
    Blob b = sample();
    b.add_type(0, 31, 0, 0);  // no such kind
    EXPECT_EQ(message(b.bytes()), "BTF: type 6 has unknown kind 31");
  }
  {
    Blob b = sample();
    // A struct that claims more members than the section holds.
    b.add_type(0, BTF_KIND_STRUCT, 1000, 8);
    EXPECT_EQ(message(b.bytes()), "BTF: type 6 runs past the type section");
  }
}

TEST(BtfView, SizesOfLoopsAndHugeArraysAreRefused) {
  Blob b;
  b.add_type(b.add_string("loop_a"), BTF_KIND_TYPEDEF, 0, 2);
  b.add_type(b.add_string("loop_b"), BTF_KIND_TYPEDEF, 0, 1);
  b.add_type(b.add_string("int"), BTF_KIND_INT, 0, 4);
  b.types.push_back(int_encoding(0, 0, 32));
  b.add_type(0, BTF_KIND_ARRAY, 0, 0);
  b.types.insert(b.types.end(), {3, 3, 0x80000000u});  // 2^31 ints: over 4 GiB
  auto v = BtfView::open(b.bytes());
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->resolve_size(1), -1);
  EXPECT_EQ(v->resolve_size(4), -1);
  EXPECT_EQ(v->resolve_size(3), 4);
}

}  // namespace
}  // namespace nfm
