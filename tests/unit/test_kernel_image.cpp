// The kernel image's relocation table and patch-site lookup (kernel/kernel_image.h);
// the real images are compared with real guests in tests/guest/test_check.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernel/kernel_image.h"

namespace nfm {
namespace {

constexpr uint64_t kText = 0xffffffff81000000;

template <typename T>
void put(std::vector<uint8_t>& b, size_t at, T v) {
  if (b.size() < at + sizeof v) b.resize(at + sizeof v);
  std::memcpy(b.data() + at, &v, sizeof v);
}
template <typename T>
T get(const std::vector<uint8_t>& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

// A vmlinux with one loaded .text of 4 KiB at kText (file offset 0x1000).
std::vector<uint8_t> tiny_vmlinux() {
  std::vector<uint8_t> b(0x2000, 0);
  std::memcpy(b.data(),
              "\x7f"
              "ELF\x02\x01\x01",
              7);
  put<uint16_t>(b, 16, 2);   // ET_EXEC
  put<uint16_t>(b, 18, 62);  // x86-64
  put<uint32_t>(b, 20, 1);
  put<uint64_t>(b, 32, 64);      // e_phoff
  put<uint64_t>(b, 40, 0x2020);  // e_shoff
  put<uint16_t>(b, 52, 64);
  put<uint16_t>(b, 54, 56);
  put<uint16_t>(b, 56, 1);
  put<uint16_t>(b, 58, 64);
  put<uint16_t>(b, 60, 3);
  put<uint16_t>(b, 62, 2);
  // PT_LOAD
  put<uint32_t>(b, 64, 1);
  put<uint32_t>(b, 68, 5);
  put<uint64_t>(b, 72, 0x1000);
  put<uint64_t>(b, 80, kText);
  put<uint64_t>(b, 88, 0x1000000);
  put<uint64_t>(b, 96, 0x1000);
  put<uint64_t>(b, 104, 0x1000);
  const char names[] = "\0.text\0.shstrtab";
  b.resize(0x2000 + sizeof names);
  std::memcpy(b.data() + 0x2000, names, sizeof names);
  auto section = [&](int i, uint32_t name, uint32_t type, uint64_t addr, uint64_t off,
                     uint64_t size) {
    const size_t at = 0x2020 + 64 * i;
    put<uint32_t>(b, at, name);
    put<uint32_t>(b, at + 4, type);
    put<uint64_t>(b, at + 16, addr);
    put<uint64_t>(b, at + 24, off);
    put<uint64_t>(b, at + 32, size);
    put<uint64_t>(b, at + 56, 0);
  };
  section(0, 0, 0, 0, 0, 0);
  section(1, 1, 1, kText, 0x1000, 0x1000);
  section(2, 7, 3, 0, 0x2000, sizeof names);
  b.resize(0x2020 + 3 * 64);
  return b;
}

// The table as arch/x86/tools/relocs appends it: 0, 64-bit, 0, inverse, 0, 32-bit.
void append_relocations(std::vector<uint8_t>& b, const std::vector<uint32_t>& r64,
                        const std::vector<uint32_t>& inverse, const std::vector<uint32_t>& r32) {
  auto word = [&](uint32_t v) { put<uint32_t>(b, b.size(), v); };
  word(0);
  for (uint32_t v : r64) word(v);
  word(0);
  for (uint32_t v : inverse) word(v);
  word(0);
  for (uint32_t v : r32) word(v);
}

TEST(KernelImage, RelocationsMoveEachKindOfReferenceByTheShift) {
  std::vector<uint8_t> b = tiny_vmlinux();
  const size_t elf_size = b.size();
  put<uint64_t>(b, 0x1010, kText + 0x40);  // an absolute pointer
  put<uint32_t>(b, 0x1020, 0x81000080);    // a sign-extended 32-bit address
  put<int32_t>(b, 0x1030, 0x100);          // a per-cpu offset (inverse)
  append_relocations(b, {0x81000010}, {0x81000030}, {0x81000020});
  const uint64_t shift = 0x2e000000;
  auto size = apply_kernel_relocations(b, shift);
  ASSERT_TRUE(size) << size.error().to_string();
  EXPECT_EQ(*size, elf_size);
  EXPECT_EQ(get<uint64_t>(b, 0x1010), kText + 0x40 + shift);
  EXPECT_EQ(get<uint32_t>(b, 0x1020), 0x81000080u + 0x2e000000u);
  EXPECT_EQ(get<int32_t>(b, 0x1030), 0x100 - 0x2e000000);
}

TEST(KernelImage, AVmlinuxWithoutATableIsRefused) {
  std::vector<uint8_t> b = tiny_vmlinux();
  auto size = apply_kernel_relocations(b, 0x200000);
  ASSERT_FALSE(size);
  EXPECT_EQ(size.error().message,
            "no relocation table after the vmlinux (a vmlinuz's payload has one)");
}

TEST(KernelImage, ARelocationOutsideTheImageIsRefused) {
  std::vector<uint8_t> b = tiny_vmlinux();
  append_relocations(b, {0x81400000}, {}, {});  // past the 4 KiB segment
  auto size = apply_kernel_relocations(b, 0x200000);
  ASSERT_FALSE(size);
  EXPECT_EQ(size.error().message, "1 relocations point outside the image's segments");
}

TEST(KernelImage, PatchSitesCoverTheirBytesOnly) {
  // A long trampoline region with small sites inside it, and sites after it.
  PatchSites sites({{0x1000, 0x100, PatchSiteKind::static_call_trampoline},
                    {0x1010, 5, PatchSiteKind::return_thunk},
                    {0x1080, 6, PatchSiteKind::alternative},
                    {0x2000, 5, PatchSiteKind::ftrace},
                    {0x2003, 1, PatchSiteKind::smp_lock}});
  auto kinds = [&](uint64_t va) {
    std::vector<PatchSiteKind> out;
    for (const PatchSite* s : sites.covering(va)) out.push_back(s->kind);
    return out;
  };
  EXPECT_TRUE(kinds(0x0fff).empty());
  EXPECT_EQ(kinds(0x1000), std::vector{PatchSiteKind::static_call_trampoline});
  EXPECT_EQ(kinds(0x1012),
            (std::vector{PatchSiteKind::return_thunk, PatchSiteKind::static_call_trampoline}));
  // Far past the small sites, still inside the trampolines.
  EXPECT_EQ(kinds(0x10ff), std::vector{PatchSiteKind::static_call_trampoline});
  EXPECT_TRUE(kinds(0x1100).empty());
  EXPECT_EQ(kinds(0x2004), std::vector{PatchSiteKind::ftrace});
  EXPECT_EQ(kinds(0x2003), (std::vector{PatchSiteKind::smp_lock, PatchSiteKind::ftrace}));
  EXPECT_TRUE(kinds(0x2005).empty());
}

}  // namespace
}  // namespace nfm
