// kallsyms: synthetic tables in both layouts, then the real tables of each test
// kernel, located by structure in the vmlinux mapped at its link addresses and
// cross-checked against what the ELF itself says (.BTF, .text, entry point).
#include <gtest/gtest.h>

#include <cstring>
#include <ctime>
#include <map>

#include "kernel/profile/kallsyms.h"
#include "kernel/profile/vmlinuz.h"
#include "test_vmlinuz_kernels.h"

namespace nfm {
namespace {

// ---- synthetic ----

// One contiguous mapped region; anything else faults.
class FlatSpace : public AddressSpace {
 public:
  FlatSpace(uint64_t base, std::vector<uint8_t> bytes) : base_(base), bytes_(std::move(bytes)) {}
  Result<void> read(uint64_t va, void* dst, size_t len) override {
    if (va < base_ || va - base_ + len > bytes_.size()) return fault_at(va, "unmapped");
    std::memcpy(dst, bytes_.data() + (va - base_), len);
    return {};
  }
  Result<uint64_t> translate(uint64_t va) override { return va - 0xffffffff80000000ull; }

 private:
  uint64_t base_;
  std::vector<uint8_t> bytes_;
};

struct SyntheticKernel {
  std::vector<uint8_t> image;
  KallsymsTables tables;  // expected
  std::vector<Symbol> symbols;
};

// Builds the tables the way scripts/kallsyms.c lays them out (.balign 8 each).
// Token codes: printable symbol characters stand for themselves; code 0x01 is
// "long_prefix_", the other unused codes get filler tokens.
SyntheticKernel make_kernel(uint64_t base_va, bool new_order, bool absolute_percpu,
                            int seqs_width = 0) {
  SyntheticKernel k;
  std::vector<std::string> tokens(256);
  for (int c = 0; c < 256; ++c) {
    if (std::isalnum(c) || c == '_' || c == '.')
      tokens[c] = std::string(1, static_cast<char>(c));
    else
      tokens[c] = "tok" + std::to_string(c) + "_";
  }
  tokens[1] = "long_prefix_";

  const uint64_t relative_base = 0xffffffff81000000ull;
  // Per-cpu symbols first (absolute, small addresses), then text/data in order.
  if (absolute_percpu) {
    k.symbols.push_back({0x0, 'A', "__per_cpu_start"});
    k.symbols.push_back({0x1000, 'A', "fixed_percpu_data"});
  }
  k.symbols.push_back({relative_base, 'T', "_text"});
  for (int i = 0; i < 700; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "sym_%04d", i);
    k.symbols.push_back(
        {relative_base + 0x100 + 0x10 * static_cast<uint64_t>(i), i % 3 ? 't' : 'T', name});
  }
  // A "big" symbol: > 0x7F compressed bytes -> two-byte length (6.1+).
  k.symbols.push_back({relative_base + 0x10000, 't', "long_prefix_" + std::string(200, 'x')});
  k.symbols.push_back({relative_base + 0x20000, 'D', "init_task"});
  k.symbols.push_back({relative_base + 0x30000, 'D', "linux_banner"});

  auto compress = [&](const std::string& full) {
    std::vector<uint8_t> out;
    std::string_view rest = full;
    while (!rest.empty()) {
      if (rest.substr(0, tokens[1].size()) == tokens[1]) {
        out.push_back(1);
        rest.remove_prefix(tokens[1].size());
      } else {
        out.push_back(static_cast<uint8_t>(rest[0]));
        rest.remove_prefix(1);
      }
    }
    return out;
  };

  std::vector<uint8_t>& img = k.image;
  for (int i = 0; i < 4096; ++i) img.push_back(static_cast<uint8_t>(0x90 + i % 7));  // "code"
  auto align8 = [&] {
    while (img.size() % 8) img.push_back(0);
  };
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) img.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  auto put64 = [&](uint64_t v) {
    put32(static_cast<uint32_t>(v));
    put32(static_cast<uint32_t>(v >> 32));
  };
  auto here = [&] { return base_va + img.size(); };
  const auto num = static_cast<uint32_t>(k.symbols.size());

  auto emit_offsets = [&] {
    align8();
    k.tables.offsets = here();
    for (const auto& s : k.symbols) {
      int64_t off = absolute_percpu ? (s.address < relative_base
                                           ? static_cast<int64_t>(s.address)
                                           : static_cast<int64_t>(relative_base - s.address - 1))
                                    : static_cast<int64_t>(s.address - relative_base);
      put32(static_cast<uint32_t>(off));
    }
    align8();
    k.tables.relative_base = here();
    put64(relative_base);
  };
  if (!new_order) emit_offsets();
  align8();
  k.tables.num_syms = here();
  put32(num);
  align8();
  k.tables.names = here();
  std::vector<uint32_t> markers;
  size_t names_start = img.size();
  for (uint32_t i = 0; i < num; ++i) {
    if ((i & 0xFF) == 0) markers.push_back(static_cast<uint32_t>(img.size() - names_start));
    auto c = compress(std::string(1, k.symbols[i].type) + k.symbols[i].name);
    if (c.size() <= 0x7F) {
      img.push_back(static_cast<uint8_t>(c.size()));
    } else {
      img.push_back(static_cast<uint8_t>((c.size() & 0x7F) | 0x80));
      img.push_back(static_cast<uint8_t>(c.size() >> 7));
    }
    img.insert(img.end(), c.begin(), c.end());
  }
  align8();
  k.tables.markers = here();
  for (uint32_t m : markers) put32(m);
  auto emit_seqs = [&] {  // kallsyms_seqs_of_names: big-endian u8[3] (or u32) per symbol
    align8();
    for (uint32_t i = 0; i < num; ++i) {
      uint32_t v = num - 1 - i;
      if (seqs_width == 4) img.push_back(static_cast<uint8_t>(v >> 24));
      for (int sh : {16, 8, 0}) img.push_back(static_cast<uint8_t>(v >> sh));
    }
  };
  if (seqs_width != 0 && !new_order) emit_seqs();  // 6.2/6.3
  align8();
  k.tables.token_table = here();
  std::vector<uint16_t> index;
  size_t tt = img.size();
  for (const auto& t : tokens) {
    index.push_back(static_cast<uint16_t>(img.size() - tt));
    img.insert(img.end(), t.begin(), t.end());
    img.push_back(0);
  }
  align8();
  k.tables.token_index = here();
  for (uint16_t v : index) {
    img.push_back(static_cast<uint8_t>(v));
    img.push_back(static_cast<uint8_t>(v >> 8));
  }
  if (new_order) emit_offsets();
  if (seqs_width != 0 && new_order) emit_seqs();
  for (int i = 0; i < 4096; ++i) img.push_back(static_cast<uint8_t>(i * 13));
  return k;
}

void expect_same_symbols(const SymbolTable& got, const std::vector<Symbol>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got.at(i).name, want[i].name) << i;
    EXPECT_EQ(got.at(i).address, want[i].address) << want[i].name;
    EXPECT_EQ(got.at(i).type, want[i].type) << want[i].name;
  }
}

struct Variant {
  bool new_order;
  bool absolute_percpu;
  int seqs_width = 0;
};

class KallsymsSynthetic : public ::testing::TestWithParam<Variant> {};

TEST_P(KallsymsSynthetic, FindsAndDecodes) {
  const uint64_t base = 0xffffffff82000000ull;
  SyntheticKernel k =
      make_kernel(base, GetParam().new_order, GetParam().absolute_percpu, GetParam().seqs_width);
  FlatSpace as(base, k.image);

  auto direct = decode_kallsyms(as, k.tables);
  ASSERT_TRUE(direct) << direct.error().to_string();
  expect_same_symbols(*direct, k.symbols);
  EXPECT_EQ(direct->find(std::string("long_prefix_") + std::string(200, 'x'))->address,
            0xffffffff81010000ull);

  // As from VMCOREINFO: no markers.
  KallsymsTables no_markers = k.tables;
  no_markers.markers = 0;
  auto vmci = decode_kallsyms(as, no_markers);
  ASSERT_TRUE(vmci) << vmci.error().to_string();
  expect_same_symbols(*vmci, k.symbols);

  auto loc = find_kallsyms(as, base, base + k.image.size());
  ASSERT_TRUE(loc) << loc.error().to_string();
  EXPECT_EQ(loc->num_syms, k.symbols.size());
  EXPECT_EQ(loc->offsets_after_token_index, GetParam().new_order);
  EXPECT_EQ(loc->tables.names, k.tables.names);
  EXPECT_EQ(loc->tables.num_syms, k.tables.num_syms);
  EXPECT_EQ(loc->tables.markers, k.tables.markers);
  EXPECT_EQ(loc->tables.token_table, k.tables.token_table);
  EXPECT_EQ(loc->tables.token_index, k.tables.token_index);
  EXPECT_EQ(loc->tables.offsets, k.tables.offsets);
  EXPECT_EQ(loc->tables.relative_base, k.tables.relative_base);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, KallsymsSynthetic,
    ::testing::Values(Variant{false, false}, Variant{false, true}, Variant{false, true, 3},
                      Variant{false, true, 4}, Variant{true, false}, Variant{true, true},
                      Variant{true, true, 3}),
    [](const auto& info) {
      return std::string(info.param.new_order ? "v6_4" : "pre6_4") +
             (info.param.absolute_percpu ? "_abs_percpu" : "_relative") +
             (info.param.seqs_width ? "_seqs" + std::to_string(info.param.seqs_width) : "");
    });

TEST(Kallsyms, CorruptMarkersAreReported) {
  const uint64_t base = 0xffffffff82000000ull;
  SyntheticKernel k = make_kernel(base, true, true);
  // Bump markers[1].
  size_t m1 = k.tables.markers - base + 4;
  k.image[m1] ^= 1;
  FlatSpace as(base, k.image);
  auto r = decode_kallsyms(as, k.tables);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_format);
  EXPECT_NE(r.error().message.find("kallsyms_markers[1]"), std::string::npos) << r.error().message;
}

TEST(Kallsyms, NothingInAWindowWithoutTables) {
  std::vector<uint8_t> junk(3 << 20, 0xcc);
  FlatSpace as(0xffffffff81000000ull, junk);
  auto r = find_kallsyms(as, 0xffffffff81000000ull, 0xffffffff81000000ull + junk.size());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found);
}

TEST(Kallsyms, FromVmcoreinfoSymbols) {
  std::map<std::string, uint64_t> vmci = {
      {"kallsyms_names", 1},       {"kallsyms_num_syms", 2}, {"kallsyms_token_table", 3},
      {"kallsyms_token_index", 4}, {"kallsyms_offsets", 5},  {"kallsyms_relative_base", 6}};
  auto get = [&](const std::string& n) -> std::optional<uint64_t> {
    auto it = vmci.find(n);
    return it == vmci.end() ? std::nullopt : std::optional<uint64_t>(it->second);
  };
  auto t = kallsyms_tables_from(get);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->names, 1u);
  EXPECT_EQ(t->relative_base, 6u);
  EXPECT_EQ(t->markers, 0u);
  vmci.erase("kallsyms_offsets");  // e.g. a 5.x kernel's VMCOREINFO
  EXPECT_FALSE(kallsyms_tables_from(get));
}

// ---- real kernels ----

class KallsymsReal : public ::testing::TestWithParam<std::string> {};

TEST_P(KallsymsReal, LocatesAndDecodesFromVmlinux) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  const ElfImage& elf = kernel->elf;
  ElfAddressSpace as(elf);
  auto [lo, hi] = as.image_range();
  ASSERT_LT(lo, hi);

  // Search the whole kernel image (~50 MiB), as for a guest without VMCOREINFO help.
  // (Speed is measured in bench/, never asserted here.)
  auto loc = find_kallsyms(as, lo, hi);
  ASSERT_TRUE(loc) << loc.error().to_string();
  auto syms = decode_kallsyms(as, loc->tables);
  ASSERT_TRUE(syms) << syms.error().to_string();

  EXPECT_GT(syms->size(), 50000u);
  EXPECT_EQ(loc->num_syms, syms->size());
  // Tables sit in .rodata; the 6.4 reorder put offsets after token_index.
  const auto* rodata = elf.section(".rodata");
  ASSERT_NE(rodata, nullptr);
  EXPECT_GE(loc->tables.names, rodata->addr);
  EXPECT_LT(loc->tables.names, rodata->addr + rodata->size);
  EXPECT_EQ(loc->offsets_after_token_index, testing::release_version(kernel->release) >= 604);

  for (const char* name : {"init_task", "linux_banner", "_stext", "_text", "__start_BTF",
                           "__stop_BTF", "init_top_pgt", "init_files", "startup_64"}) {
    EXPECT_TRUE(syms->contains(name)) << name;
  }
  // x86-64 has no swapper_pg_dir symbol: it is a #define for init_top_pgt.
  if (auto s = syms->find("swapper_pg_dir")) {
    EXPECT_EQ(s->address, *syms->lookup("init_top_pgt"));
  }

  // Addresses are sorted (scripts/kallsyms.c sorts by address).
  for (size_t i = 1; i < syms->size(); ++i) {
    ASSERT_LE(syms->at(i - 1).address, syms->at(i).address) << i;
  }

  // linux_banner points at the banner.
  char banner[14];
  ASSERT_TRUE(as.read(*syms->lookup("linux_banner"), banner, sizeof banner));
  EXPECT_EQ(std::string_view(banner, sizeof banner), "Linux version ");
  auto elf_banner = read_linux_banner(elf);
  ASSERT_TRUE(elf_banner);
  std::string at_symbol(elf_banner->size(), '\0');
  ASSERT_TRUE(as.read(*syms->lookup("linux_banner"), at_symbol.data(), at_symbol.size()));
  EXPECT_EQ(at_symbol, *elf_banner);

  // __start_BTF..__stop_BTF holds exactly the .BTF section.
  auto btf = read_vmlinux_btf(elf);
  ASSERT_TRUE(btf);
  uint64_t start = *syms->lookup("__start_BTF"), stop = *syms->lookup("__stop_BTF");
  ASSERT_EQ(stop - start, btf->size());
  std::vector<uint8_t> mem(btf->size());
  ASSERT_TRUE(as.read(start, mem.data(), mem.size()));
  EXPECT_TRUE(std::equal(mem.begin(), mem.end(), btf->begin()));
  EXPECT_EQ(start, elf.section(".BTF")->addr);

  // _text is the start of .text; startup_64 is the ELF entry point (a physical address).
  EXPECT_EQ(*syms->lookup("_text"), elf.section(".text")->addr);
  uint64_t entry = 0;
  std::memcpy(&entry, elf.bytes().data() + 0x18, 8);
  auto entry_phys = as.translate(*syms->lookup("startup_64"));
  ASSERT_TRUE(entry_phys);
  EXPECT_EQ(*entry_phys, entry);

  // Per-cpu symbols stay absolute (small) with KALLSYMS_ABSOLUTE_PERCPU.
  auto fpd = syms->find("fixed_percpu_data");
  if (!fpd) fpd = syms->find("pcpu_hot");  // 6.2+ moved current_task there
  ASSERT_TRUE(fpd.has_value());
  EXPECT_LT(fpd->address, 0x100000u);

  // The VMCOREINFO route (no markers) decodes the same table.
  KallsymsTables vmci = loc->tables;
  vmci.markers = 0;
  auto again = decode_kallsyms(as, vmci);
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->size(), syms->size());
  EXPECT_EQ(*again->lookup("init_task"), *syms->lookup("init_task"));
}

TEST_P(KallsymsReal, VmlinuxKallsymsConvenience) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  auto syms = read_vmlinux_kallsyms(kernel->elf);
  ASSERT_TRUE(syms) << syms.error().to_string();
  EXPECT_GT(syms->size(), 50000u);
  EXPECT_EQ(syms->symbolize(*syms->lookup("init_task") + 8), "init_task+0x8");
}

INSTANTIATE_TEST_SUITE_P(Kernels, KallsymsReal, ::testing::ValuesIn(testing::kernel_params()),
                         testing::param_name);

}  // namespace
}  // namespace nfm
