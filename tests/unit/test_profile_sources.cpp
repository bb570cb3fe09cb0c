// Profile sources that are files nfm reads: the compiled-profile cache and
// Volatility ISF. Corrupt, truncated or foreign files give clear errors; an ISF
// written from a kernel's BTF reads back into the same layouts.
#include <bpf/btf.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kernel/profile/btf_builder.h"
#include "kernel/profile/isf.h"
#include "kernel/profile/profile_cache.h"
#include "kernel/profile/vmlinuz.h"
#include "test_vmlinuz_kernels.h"

namespace {

using nfm::BtfBuilder;

// struct demo { int a; unsigned int flag : 3; unsigned int more : 5; struct demo *next;
//               union { long x; char name[12]; }; };  enum color { RED, GREEN = -2 };
nfm::Types demo_types() {
  BtfBuilder b;
  using K = BtfBuilder::Kind;
  const uint32_t i32 =
      b.add({.kind = K::int_, .name = "int", .size = 4, .encoding = BTF_INT_SIGNED});
  const uint32_t u32 = b.add({.kind = K::int_, .name = "unsigned int", .size = 4});
  const uint32_t i64 =
      b.add({.kind = K::int_, .name = "long", .size = 8, .encoding = BTF_INT_SIGNED});
  const uint32_t chr =
      b.add({.kind = K::int_, .name = "char", .size = 1, .encoding = BTF_INT_SIGNED});
  const uint32_t demo = b.add({.kind = K::struct_, .name = "demo", .size = 32});
  const uint32_t ptr = b.add({.kind = K::pointer, .ref = demo});
  b.array_index_type();
  const uint32_t arr = b.add({.kind = K::array, .ref = chr, .count = 12});
  const uint32_t un =
      b.add({.kind = K::union_, .size = 16, .members = {{"x", i64, 0, 0}, {"name", arr, 0, 0}}});
  b.node(demo).members = {{"a", i32, 0, 0},
                          {"flag", u32, 32, 3},
                          {"more", u32, 35, 5},
                          {"next", ptr, 64, 0},
                          {"", un, 128, 0}};
  b.add({.kind = K::enum_,
         .name = "color",
         .size = 4,
         .is_signed = true,
         .enumerators = {{"RED", 0}, {"GREEN", -2}}});
  auto t = b.build();
  EXPECT_TRUE(t.ok()) << t.error().to_string();
  return *t;
}

nfm::SymbolTable demo_symbols() {
  return nfm::SymbolTable({{0xffffffff81000000, 'T', "_stext"},
                           {0xffffffff82000000, 'D', "linux_banner"},
                           {0x1000, 'D', "per_cpu_thing"}});
}

void expect_same_layout(const nfm::Types& a, const nfm::Types& b, const char* s,
                        std::initializer_list<const char*> members) {
  EXPECT_EQ(*a.size_of(s), *b.size_of(s)) << s;
  for (const char* m : members) {
    auto fa = a.member(s, m);
    auto fb = b.member(s, m);
    ASSERT_TRUE(fa.ok()) << s << "." << m << ": " << fa.error().to_string();
    ASSERT_TRUE(fb.ok()) << s << "." << m << ": " << fb.error().to_string();
    EXPECT_EQ(fa->bit_offset, fb->bit_offset) << s << "." << m;
    EXPECT_EQ(fa->bitfield_bits, fb->bitfield_bits) << s << "." << m;
    EXPECT_EQ(fa->size, fb->size) << s << "." << m;
  }
}

std::string temp(const std::string& name) {
  return ::testing::TempDir() + "/nfm-profile-" + std::to_string(getpid()) + "-" + name;
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Isf, RoundTripOfASyntheticKernel) {
  const nfm::Types t = demo_types();
  for (const char* ext : {".json", ".json.xz"}) {
    const std::string path = temp(std::string("demo") + ext);
    ASSERT_TRUE(
        nfm::write_isf(path, t, demo_symbols(), "Linux version 9.9.9-demo (x) #1", "test").ok());
    auto back = nfm::load_isf(path);
    ASSERT_TRUE(back.ok()) << back.error().to_string();
    expect_same_layout(t, back->types, "demo",
                       {"a", "flag", "more", "next", "x", "name", "name[3]"});
    EXPECT_EQ(*back->types.enum_value("GREEN"), -2);
    EXPECT_EQ(*back->types.enum_value("color", "RED"), 0);
    EXPECT_EQ(*back->symbols.lookup("_stext"), 0xffffffff81000000u);
    EXPECT_EQ(*back->symbols.lookup("per_cpu_thing"), 0x1000u);
    EXPECT_EQ(back->banner, "Linux version 9.9.9-demo (x) #1");
    auto next = back->types.member("demo", "next");
    EXPECT_TRUE(back->types.has_member(*back->types.pointee(next->type), "flag"));
    std::filesystem::remove(path);
  }
}

TEST(Isf, CorruptAndTruncatedFilesAreClearErrors) {
  const std::string path = temp("full.json");
  ASSERT_TRUE(nfm::write_isf(path, demo_types(), demo_symbols(), "", "test").ok());
  const std::vector<uint8_t> good = slurp(path);
  auto expect_error = [](std::span<const uint8_t> bytes, const std::string& needle) {
    auto r = nfm::parse_isf(bytes);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  expect_error(std::span(good).first(good.size() / 2), "not valid JSON");
  expect_error({}, "not valid JSON");
  const std::string not_isf = R"({"hello": 1})";
  expect_error(std::span(reinterpret_cast<const uint8_t*>(not_isf.data()), not_isf.size()),
               "not a Volatility symbol table");
  const std::string bad_field =
      R"({"metadata":{},"symbols":{},"base_types":{},"user_types":{"s":{"kind":"struct","size":4,"fields":{"f":{"offset":0,"type":{"kind":"base","name":"nope"}}}}}})";
  expect_error(std::span(reinterpret_cast<const uint8_t*>(bad_field.data()), bad_field.size()),
               "unknown base type 'nope'");
  // A value of the wrong JSON type (a number where a boolean belongs) is one error, not
  // an exception out of the parser (tests/fuzz/regressions/isf/wrong-json-type).
  const std::string wrong_type =
      R"({"metadata":{},"symbols":{},"base_types":{"int":{"kind":"int","size":4,"signed":0,"endian":"little"}},"user_types":{}})";
  expect_error(std::span(reinterpret_cast<const uint8_t*>(wrong_type.data()), wrong_type.size()),
               "malformed: ");
  // A float where an integer belongs (tests/fuzz/regressions/isf/float-where-integer).
  const std::string float_size =
      R"({"metadata":{},"symbols":{},"base_types":{"int":{"kind":"int","size":8e102,"signed":true,"endian":"little"}},"user_types":{}})";
  expect_error(std::span(reinterpret_cast<const uint8_t*>(float_size.data()), float_size.size()),
               "malformed: a number that is not an integer");
  const std::string xz_path = temp("full.json.xz");
  ASSERT_TRUE(nfm::write_isf(xz_path, demo_types(), demo_symbols(), "", "test").ok());
  std::vector<uint8_t> xz = slurp(xz_path);
  expect_error(std::span(xz).first(xz.size() - 20), "xz");
  auto missing = nfm::load_isf(temp("missing.json"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("missing.json"), std::string::npos);
  std::filesystem::remove(path);
  std::filesystem::remove(xz_path);
}

// A real kernel's BTF (from its vmlinuz) written as ISF reads back member for member.
TEST(Isf, RoundTripOfARealKernelsBtf) {
  auto kernels = nfm::testing::available_kernels();
  if (kernels.empty()) GTEST_SKIP() << "no kernels in " << nfm::testing::kernels_dir();
  auto image = nfm::extract_vmlinux_file(nfm::testing::kernels_dir() / kernels.front() / "vmlinuz");
  ASSERT_TRUE(image.ok());
  auto elf = nfm::ElfImage::parse(*image);
  ASSERT_TRUE(elf.ok());
  auto types = nfm::Types::from_btf_bytes(*nfm::read_vmlinux_btf(*elf));
  ASSERT_TRUE(types.ok());
  const std::string path = temp("real.json");
  ASSERT_TRUE(nfm::write_isf(path, *types, demo_symbols(), "", "test").ok());
  auto back = nfm::load_isf(path);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  expect_same_layout(*types, back->types, "task_struct",
                     {"pid", "tgid", "comm", "tasks", "mm", "real_parent", "se.sum_exec_runtime",
                      "signal", "cred", "flags"});
  expect_same_layout(*types, back->types, "module", {"name", "list", "state"});
  expect_same_layout(*types, back->types, "sock", {"__sk_common.skc_family", "sk_type"});
  EXPECT_EQ(*back->types.enum_value("PIDTYPE_TGID"), *types->enum_value("PIDTYPE_TGID"));
  EXPECT_TRUE(back->types.find_type("nodemask_t").ok());
  std::filesystem::remove(path);
}

nfm::CompiledProfile demo_profile() {
  nfm::CompiledProfile p;
  p.key = nfm::profile_key("9.9.9-demo", "abcd", "guest");
  p.release = "9.9.9-demo";
  p.banner = "Linux version 9.9.9-demo";
  p.build_id = "abcd";
  p.symbols_source = "guest kallsyms";
  p.types_source = "guest BTF";
  p.symbols = demo_symbols();
  p.types = demo_types();
  return p;
}

TEST(ProfileCache, RoundTripAndEveryKindOfDamage) {
  const auto serialized = nfm::serialize_profile(demo_profile());
  ASSERT_TRUE(serialized.ok()) << serialized.error().to_string();
  const std::vector<uint8_t>& bytes = *serialized;
  auto back = nfm::deserialize_profile(bytes);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ((*back)->banner, "Linux version 9.9.9-demo");
  EXPECT_EQ(*(*back)->symbols.lookup("linux_banner"), 0xffffffff82000000u);
  expect_same_layout(demo_types(), *(*back)->types, "demo", {"a", "flag", "more", "next", "x"});

  auto expect_error = [](std::vector<uint8_t> b, const std::string& needle) {
    auto r = nfm::deserialize_profile(b);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  expect_error({}, "bad magic");
  expect_error(std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2), "truncated");
  std::vector<uint8_t> flipped = bytes;
  flipped[flipped.size() - 100] ^= 0x40;
  expect_error(flipped, "checksum");
  std::vector<uint8_t> version = bytes;
  version[8] = 99;
  expect_error(version, "format version 99");
  std::vector<uint8_t> isf(bytes.size(), '{');
  expect_error(isf, "bad magic");
}

TEST(ProfileCache, BadFilesAreReportedAndEvicted) {
  const std::string dir = temp("cache");
  std::filesystem::create_directories(dir);
  nfm::clear_profile_registry();
  nfm::ProfileCache cache(dir);
  auto p = std::make_shared<nfm::CompiledProfile>(demo_profile());
  const std::string key = p->key;
  ASSERT_TRUE(cache.store(p).ok());
  nfm::clear_profile_registry();
  auto loaded = cache.load(key);
  ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  EXPECT_EQ((*loaded)->release, "9.9.9-demo");
  EXPECT_EQ(cache.load(key)->get(), loaded->get()) << "one profile shared in the process";

  // Truncated on disk: a clear error naming the file, then gone.
  nfm::clear_profile_registry();
  std::filesystem::resize_file(cache.path_of(key), 100);
  auto bad = cache.load(key);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find(cache.path_of(key)), std::string::npos);
  EXPECT_NE(bad.error().message.find("truncated"), std::string::npos) << bad.error().message;
  cache.evict(key);
  EXPECT_FALSE(std::filesystem::exists(cache.path_of(key)));
  EXPECT_EQ(cache.load(key).error().code, nfm::Errc::not_found);

  // Another kernel's file under this key's name: refused.
  auto other = std::make_shared<nfm::CompiledProfile>(demo_profile());
  other->key = nfm::profile_key("1.2.3", "", "guest");
  ASSERT_TRUE(cache.store(other).ok());
  nfm::clear_profile_registry();
  std::filesystem::rename(cache.path_of(other->key), cache.path_of(key));
  auto foreign = cache.load(key);
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.error().message.find("another kernel"), std::string::npos);
  nfm::clear_profile_registry();
  std::filesystem::remove_all(dir);
}

TEST(ProfileCache, KeysSeparateBuildsAndSources) {
  EXPECT_NE(nfm::profile_key("6.1.0-56-amd64", "aa", "guest"),
            nfm::profile_key("6.1.0-56-amd64", "bb", "guest"));
  EXPECT_NE(nfm::profile_key("6.1.0-56-amd64", "aa", "guest"),
            nfm::profile_key("6.1.0-56-amd64", "aa", "dwarf=/x:1:2"));
  EXPECT_EQ(nfm::profile_key("6.1.0-56-amd64", "aa", "guest").rfind("6.1.0-56-amd64-", 0), 0u);
  EXPECT_EQ(nfm::profile_key("../../etc/x", "", "guest").find('/'), std::string::npos);
}

}  // namespace

// Found by the dwarf fuzzer, and reachable from a guest's own BTF: anonymous members
// that each hold two more anonymous members, 30 levels deep, made a lookup of a
// missing member try 2^30 paths. A lookup now gives up after a bounded number of
// members (a real kernel's largest struct has a few hundred): without the bound this
// test does not finish.
TEST(Types, AnonymousMembersThatBranchCannotMakeALookupHang) {
  BtfBuilder b;
  using K = BtfBuilder::Kind;
  const uint32_t i32 =
      b.add({.kind = K::int_, .name = "int", .size = 4, .encoding = BTF_INT_SIGNED});
  uint32_t inner = b.add({.kind = K::struct_, .size = 4, .members = {{"x", i32, 0, 0}}});
  for (int level = 0; level < 30; ++level)
    inner =
        b.add({.kind = K::union_, .size = 4, .members = {{"", inner, 0, 0}, {"", inner, 0, 0}}});
  const uint32_t outer =
      b.add({.kind = K::struct_, .name = "outer", .size = 4, .members = {{"", inner, 0, 0}}});
  auto t = b.build();
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  auto x = t->member(nfm::TypeRef{outer}, "x");
  ASSERT_TRUE(x.ok()) << x.error().to_string();
  EXPECT_EQ(x->offset, 0u);
  auto missing = t->member(nfm::TypeRef{outer}, "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("has no member 'nope'"), std::string::npos)
      << missing.error().message;
}

namespace nfm {
namespace {

TEST(ProfileCache, RemembersWhatEachImageHeld) {
  const std::string dir = ::testing::TempDir() + "/nfm-hints-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  const ProfileCache cache(dir);
  using Hint = ProfileCache::ImageHint;
  EXPECT_FALSE(cache.image_hint("a:1:2:3:4.5"));
  cache.remember_image("a:1:2:3:4.5", {0x18ab000, 0xfeedfacecafebeef});
  cache.remember_image("b:1:2:3:4.5", {0x2000, 0});
  cache.remember_image("a:1:2:3:4.5", {0x3000, 7});  // the same image again: replaced
  EXPECT_EQ(cache.image_hint("a:1:2:3:4.5"), (Hint{0x3000, 7}));
  EXPECT_EQ(cache.image_hint("b:1:2:3:4.5"), (Hint{0x2000, 0}));
  EXPECT_FALSE(cache.image_hint("a:1:2:3:4.6"));  // touched since: another image
  cache.remember_image("", {0x1000, 1});          // an image without an identity
  EXPECT_FALSE(cache.image_hint(""));

  // Bounded: the oldest images are forgotten first.
  for (size_t i = 0; i < ProfileCache::kMaxVmcoreinfoHints; ++i)
    cache.remember_image("img" + std::to_string(i), {0x1000 * (i + 1), UINT64_MAX - i});
  EXPECT_FALSE(cache.image_hint("b:1:2:3:4.5"));
  EXPECT_EQ(cache.image_hint("img0"), (Hint{0x1000, UINT64_MAX}));
  EXPECT_EQ(cache.image_hint("img255"), (Hint{0x100000, UINT64_MAX - 255}));
  std::ifstream f(dir + "/vmcoreinfo-hints");
  size_t lines = 0;
  for (std::string line; std::getline(f, line);) ++lines;
  EXPECT_EQ(lines, ProfileCache::kMaxVmcoreinfoHints);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nfm
