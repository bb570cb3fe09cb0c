#include <gtest/gtest.h>

#include <fmt/format.h>

#include "kernel/profile/system_map.h"
#include "kernel/symbols.h"
#include "test_vmlinuz_kernels.h"

namespace nfm {
namespace {

constexpr std::string_view kMap =
    "0000000000000000 A __per_cpu_start\n"
    "0000000000001000 D fixed_percpu_data\n"
    "ffffffff81000000 T _text\n"
    "ffffffff81000000 T startup_64\n"
    "ffffffff81001000 t helper\n"
    "ffffffff81002000 T do_work\n"
    "ffffffff81003000 t helper\n"
    "ffffffff82000000 D init_task\n"
    "ffffffff82001000 b helper2\r\n"
    "\n";

TEST(SymbolTable, ParsesSystemMap) {
  auto t = parse_system_map(kMap);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->size(), 9u);
  EXPECT_EQ(*t->lookup("init_task"), 0xffffffff82000000ull);
  EXPECT_EQ(t->find("helper2")->type, 'b');
  EXPECT_EQ(*t->lookup("__per_cpu_start"), 0u);
  auto missing = t->lookup("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  // Sorted by address.
  for (size_t i = 1; i < t->size(); ++i)
    EXPECT_LE(t->at(i - 1).address, t->at(i).address);
}

TEST(SymbolTable, DuplicateNamesPreferGlobalThenFirst) {
  auto t = parse_system_map(
      "ffffffff81000010 t dup\n"
      "ffffffff81000020 T dup\n"
      "ffffffff81000030 t dup\n"
      "ffffffff81000040 t local_twice\n"
      "ffffffff81000050 t local_twice\n");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t->lookup("dup"), 0xffffffff81000020ull);
  EXPECT_EQ(*t->lookup("local_twice"), 0xffffffff81000040ull);
}

TEST(SymbolTable, NearestAndSymbolize) {
  auto t = parse_system_map(kMap);
  ASSERT_TRUE(t);
  auto n = t->nearest(0xffffffff81002010ull);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->symbol.name, "do_work");
  EXPECT_EQ(n->offset, 0x10u);
  EXPECT_EQ(t->symbolize(0xffffffff81002010ull), "do_work+0x10");
  EXPECT_EQ(t->symbolize(0xffffffff81003000ull), "helper");
  EXPECT_EQ(t->nearest(0)->symbol.name, "__per_cpu_start");
  SymbolTable empty;
  EXPECT_FALSE(empty.nearest(0x1234));
  EXPECT_EQ(empty.symbolize(0x1234), "0x1234");
}

TEST(SymbolTable, ShiftMovesOnlyKernelImage) {
  auto t = parse_system_map(kMap);
  ASSERT_TRUE(t);
  SymbolTable s = t->shifted(0x2a000000);
  EXPECT_EQ(*s.lookup("init_task"), 0xffffffff82000000ull + 0x2a000000);
  EXPECT_EQ(*s.lookup("fixed_percpu_data"), 0x1000u);  // per-cpu: not relocated
  // The name index survives copies: the copy is what is under test.
  SymbolTable copy = s;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(*copy.lookup("do_work"), 0xffffffff81002000ull + 0x2a000000);
}

TEST(SymbolTable, ShiftedViewAnswersLikeAShiftedCopy) {
  auto t = parse_system_map(kMap);
  ASSERT_TRUE(t);
  for (int64_t delta : {int64_t{0x2a000000}, int64_t{-0x800000}}) {
    const SymbolTable view = t->shifted(delta);
    // The reference: a table built from relocated text.
    std::string text;
    for (size_t i = 0; i < t->size(); ++i) {
      SymbolRef s = t->at(i);
      const uint64_t a = s.address >= 0xffffffff80000000ull ? s.address + delta : s.address;
      text += fmt::format("{:016x} {} {}\n", a, s.type, s.name);
    }
    auto ref = parse_system_map(text);
    ASSERT_TRUE(ref);
    ASSERT_EQ(view.size(), ref->size());
    for (size_t i = 0; i < view.size(); ++i) {
      EXPECT_EQ(view.at(i).address, ref->at(i).address) << i;
      EXPECT_EQ(view.at(i).name, ref->at(i).name) << i;
    }
    // Probe nearest/next_after at every symbol, one below and one above.
    for (size_t i = 0; i < ref->size(); ++i) {
      for (uint64_t probe : {ref->at(i).address - 1, ref->at(i).address, ref->at(i).address + 1}) {
        auto a = view.nearest(probe), b = ref->nearest(probe);
        ASSERT_EQ(a.has_value(), b.has_value()) << std::hex << probe;
        if (a) {
          EXPECT_EQ(a->symbol.address, b->symbol.address) << std::hex << probe;
          EXPECT_EQ(a->offset, b->offset);
        }
        auto c = view.next_after(probe), d = ref->next_after(probe);
        ASSERT_EQ(c.has_value(), d.has_value()) << std::hex << probe;
        if (c) {
          EXPECT_EQ(c->address, d->address) << std::hex << probe;
        }
      }
    }
    EXPECT_EQ(view.symbolize(*ref->lookup("do_work") + 0x10), "do_work+0x10");
  }
}

TEST(SymbolTable, StorageRoundTripAndDamage) {
  auto t = parse_system_map(kMap);
  ASSERT_TRUE(t);
  const SymbolTable::Storage& st = t->storage();
  // Copies of the arrays, as a mapped file would hold them.
  auto entries = std::make_shared<std::vector<SymbolTable::Entry>>(st.entries.begin(),
                                                                   st.entries.end());
  auto by_name = std::make_shared<std::vector<uint32_t>>(st.by_name.begin(), st.by_name.end());
  auto names = std::make_shared<std::string>(st.names);
  auto adopt = [&] {
    return SymbolTable::from_storage({*entries, *names, *by_name, names});
  };
  auto back = adopt();
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back->lookup("init_task"), 0xffffffff82000000ull);
  EXPECT_EQ(*back->lookup("helper"), *t->lookup("helper"));
  EXPECT_EQ(format_system_map(*back), format_system_map(*t));

  (*entries)[3].name_offset = static_cast<uint32_t>(names->size());  // name out of bounds
  EXPECT_FALSE(adopt());
  *entries = {st.entries.begin(), st.entries.end()};
  (*by_name)[0] = 1000;  // index out of range
  EXPECT_FALSE(adopt());
  *by_name = {st.by_name.begin(), st.by_name.end()};
  std::swap((*entries)[2], (*entries)[7]);  // address order broken
  EXPECT_FALSE(adopt());
}

TEST(SymbolTable, AcceptsProcKallsymsModules) {
  auto t = parse_system_map("ffffffffc0a01000 t e1000_probe\t[e1000]\nffffffff81000000 T _text\n");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(*t->lookup("e1000_probe"), 0xffffffffc0a01000ull);
}

TEST(SymbolTable, RejectsMalformedLines) {
  auto r = parse_system_map("ffffffff81000000 T ok\nnot a symbol line\n");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_format);
  EXPECT_NE(r.error().message.find("line 2"), std::string::npos) << r.error().message;
  EXPECT_FALSE(parse_system_map(""));
}

TEST(SymbolTable, DebianStubSystemMapSaysWhy) {
  auto r = parse_system_map(
      "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_NE(r.error().message.find("placeholder"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("-dbg"), std::string::npos) << r.error().message;

  // The real files that Debian packages ship.
  int seen = 0;
  for (const auto& release : testing::available_kernels()) {
    auto path = testing::kernels_dir() / release / "System.map";
    if (!std::filesystem::exists(path)) continue;
    auto real = load_system_map(path.string());
    if (real) continue;  // someone put a real System.map there: fine
    EXPECT_EQ(real.error().code, Errc::not_found) << real.error().message;
    EXPECT_NE(real.error().message.find("placeholder"), std::string::npos) << real.error().message;
    ++seen;
  }
  RecordProperty("debian_stub_maps", seen);
}

}  // namespace
}  // namespace nfm
