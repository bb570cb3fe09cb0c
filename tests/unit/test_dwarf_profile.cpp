// DWARF -> BTF conversion against the kernel's own BTF: Debian's -dbg vmlinux
// carries both DWARF and the .BTF pahole made from it, so every struct Types
// reads must resolve to the same offsets, sizes and bitfields from either.
// The vmlinux comes from `testing/guest/fetch-kernel.sh --dbg 6.1-cloud`.
#include <bpf/btf.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kernel/profile/dwarf_profile.h"
#include "kernel/profile/vmlinuz.h"
#include "memory/mapped_file.h"
#include "test_vmlinuz_kernels.h"

namespace {

std::string dbg_vmlinux() {
  for (const std::string& release : nfm::testing::available_kernels()) {
    auto p = nfm::testing::kernels_dir() / release / "dbg" / "vmlinux";
    if (std::filesystem::exists(p)) return p.string();
  }
  return {};
}

struct Both {
  nfm::DwarfProfile dwarf;
  std::optional<nfm::Types> btf;
};

Both* load_both() {
  static std::unique_ptr<Both> both = []() -> std::unique_ptr<Both> {
    const std::string path = dbg_vmlinux();
    if (path.empty()) return nullptr;
    auto dwarf = nfm::load_dwarf_profile(path);
    EXPECT_TRUE(dwarf.ok()) << dwarf.error().to_string();
    if (!dwarf) return nullptr;
    auto mapped = nfm::MappedFile::open(path);
    EXPECT_TRUE(mapped.ok());
    auto elf = nfm::ElfImage::parse(std::span<const uint8_t>(mapped->data(), mapped->size()));
    EXPECT_TRUE(elf.ok());
    auto blob = nfm::read_vmlinux_btf(*elf);
    EXPECT_TRUE(blob.ok());
    auto btf = nfm::Types::from_btf_bytes(*blob);
    EXPECT_TRUE(btf.ok());
    auto out = std::make_unique<Both>(Both{std::move(dwarf).value(), std::move(btf).value()});
    return out;
  }();
  return both.get();
}

#define NEED_BOTH(var)                                                   \
  Both* var = load_both();                                               \
  if (!(var))                                                            \
  GTEST_SKIP() << "no dbg/vmlinux under " << nfm::testing::kernels_dir() \
               << " (testing/guest/fetch-kernel.sh --dbg 6.1-cloud)"

// Every named member of `name`, recursively through anonymous members, compared.
void compare_struct(const nfm::Types& a, const nfm::Types& b, const std::string& name) {
  SCOPED_TRACE(name);
  auto ta = a.find_struct(name);
  auto tb = b.find_struct(name);
  ASSERT_TRUE(ta.ok()) << ta.error().to_string();
  ASSERT_TRUE(tb.ok()) << tb.error().to_string();
  EXPECT_EQ(*a.size_of(*ta), *b.size_of(*tb));
  const struct btf* raw = b.libbpf();
  size_t compared = 0;
  std::function<void(uint32_t)> walk = [&](uint32_t id) {
    const struct btf_type* t = btf__type_by_id(raw, id);
    const struct btf_member* m = btf_members(t);
    for (unsigned i = 0; i < btf_vlen(t); ++i) {
      const char* mn = btf__name_by_offset(raw, m[i].name_off);
      if (mn && *mn) {
        auto fa = a.member(*ta, mn);
        auto fb = b.member(*tb, mn);
        ASSERT_TRUE(fb.ok()) << mn;
        ASSERT_TRUE(fa.ok()) << name << "." << mn << ": " << fa.error().to_string();
        EXPECT_EQ(fa->bit_offset, fb->bit_offset) << name << "." << mn;
        EXPECT_EQ(fa->bitfield_bits, fb->bitfield_bits) << name << "." << mn;
        EXPECT_EQ(fa->size, fb->size) << name << "." << mn;
        EXPECT_EQ(a.kind(a.resolve(fa->type)), b.kind(b.resolve(fb->type))) << name << "." << mn;
        ++compared;
      } else {
        uint32_t inner = b.resolve(nfm::TypeRef{m[i].type}).id;
        const struct btf_type* it = btf__type_by_id(raw, inner);
        if (btf_is_struct(it) || btf_is_union(it)) walk(inner);
      }
    }
  };
  walk(tb->id);
  EXPECT_GT(compared, 0u);
}

TEST(DwarfProfile, MembersMatchTheKernelsOwnBtf) {
  NEED_BOTH(both);
  for (const char* s :
       {"task_struct",   "mm_struct",     "module",   "net_device",   "sock",
        "file",          "inode",         "dentry",   "super_block",  "vm_area_struct",
        "cred",          "signal_struct", "sk_buff",  "page",         "timekeeper",
        "uts_namespace", "pid",           "upid",     "files_struct", "fdtable",
        "socket",        "inet_sock",     "tcp_sock", "zone",         "printk_ringbuffer",
        "cpuinfo_x86",   "kernel_param",  "mount",    "net"})
    compare_struct(both->dwarf.types, *both->btf, s);
}

TEST(DwarfProfile, EnumsTypedefsAndSymbols) {
  NEED_BOTH(both);
  const nfm::Types& d = both->dwarf.types;
  for (const char* e : {"PIDTYPE_TGID", "MODULE_STATE_COMING", "TASK_COMM_LEN", "NR_FILE_PAGES",
                        "N_ONLINE", "WMARK_LOW"}) {
    auto a = d.enum_value(e);
    auto b = both->btf->enum_value(e);
    ASSERT_TRUE(b.ok()) << e;
    ASSERT_TRUE(a.ok()) << e << ": " << a.error().to_string();
    EXPECT_EQ(*a, *b) << e;
  }
  auto nodemask = d.find_type("nodemask_t");
  ASSERT_TRUE(nodemask.ok());
  EXPECT_EQ(*d.size_of(*nodemask), *both->btf->size_of(*both->btf->find_type("nodemask_t")));
  auto mm = d.pointee(d.member("task_struct", "mm")->type);
  ASSERT_TRUE(mm.ok());
  EXPECT_TRUE(d.has_member(*mm, "pgd")) << "a pointer to a declared struct reaches its definition";
  for (const char* s : {"init_task", "_stext", "linux_banner", "init_top_pgt", "__per_cpu_offset"})
    EXPECT_TRUE(both->dwarf.symbols.contains(s)) << s;
  EXPECT_EQ(both->dwarf.banner.rfind("Linux version ", 0), 0u) << both->dwarf.banner;
}

TEST(DwarfProfile, NotDwarfIsAClearError) {
  auto r = nfm::load_dwarf_profile("/bin/true");  // a stripped ELF
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("no DWARF"), std::string::npos) << r.error().message;
  const std::string junk = ::testing::TempDir() + "/not-an-elf";
  std::ofstream(junk) << "hello";
  auto j = nfm::load_dwarf_profile(junk);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.error().message.find("not an ELF"), std::string::npos) << j.error().message;
  auto missing = nfm::load_dwarf_profile("/nonexistent/vmlinux");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/vmlinux"), std::string::npos);
}

}  // namespace

// The dwarf fuzz target's seed (tests/fuzz/seeds/dwarf_seed.c) converts whole: the
// fuzzer starts from a file that reaches the converter, not one refused at the door.
TEST(DwarfProfile, TheFuzzSeedConvertsWithItsCLayout) {
  auto p = nfm::load_dwarf_profile(std::string(NFM_SOURCE_DIR) +
                                   "/tests/fuzz/seeds/dwarf/kernel-types.elf");
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  EXPECT_EQ(p->banner, "Linux version 6.1.0-fuzz (fuzz@nfm) #1 SMP");
  EXPECT_TRUE(p->symbols.contains("init_task"));
  auto task = p->types.find_struct("task_struct");
  ASSERT_TRUE(task);
  // state 0, the bitfields' unsigned int at 8, tasks 16, mm 32, pid 40, tgid 44, comm 48.
  auto comm = p->types.member(*task, "comm");
  ASSERT_TRUE(comm);
  EXPECT_EQ(comm->offset, 48u);
  EXPECT_EQ(comm->size, 16u);
  auto iowait = p->types.member(*task, "in_iowait");
  ASSERT_TRUE(iowait);
  EXPECT_EQ(iowait->bit_offset, 64u + 10u);
  EXPECT_EQ(iowait->bitfield_bits, 1u);
}

// Found by the dwarf fuzzer: a type whose type is itself (through a qualifier)
// recursed until the stack overflowed. It is now a clear error.
TEST(DwarfProfile, ATypeCycleIsAClearError) {
  auto r = nfm::load_dwarf_profile(std::string(NFM_SOURCE_DIR) +
                                   "/tests/fuzz/regressions/dwarf/const-of-itself");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("types nest deeper than 256 levels"), std::string::npos)
      << r.error().message;
}
