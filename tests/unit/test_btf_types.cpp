// Types (BTF) against the real BTF of each test kernel. The oracle for offsets is
// pahole (dwarves), run on the extracted vmlinux: an independent BTF reader.
#include <bpf/btf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string_view>

#include "kernel/btf_types.h"
#include "test_vmlinuz_kernels.h"

namespace nfm {
namespace {

using testing::release_version;

struct PaholeMember {
  uint64_t bit_offset;
  uint64_t size;
};

bool have_pahole() {
  return std::system("pahole --version >/dev/null 2>&1") == 0;
}

// The vmlinux written to a temporary file for pahole, removed again afterwards.
struct TempVmlinux {
  std::string path;
  explicit TempVmlinux(const testing::KernelImage& k)
      : path(::testing::TempDir() + "nfm-vmlinux-" + std::to_string(getpid()) + "-" + k.release) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(k.vmlinux.data()),
            static_cast<std::streamsize>(k.vmlinux.size()));
  }
  ~TempVmlinux() { std::remove(path.c_str()); }
};

// `pahole -C name` members by dotted path. pahole prints the members of inline
// struct/union types with offsets from the start of the outer struct; those of an
// anonymous one are reachable by their own names, those of a named one ("} adj_list;")
// as "adj_list.upper".
// "/*  2340: 1  4 */" or "/*    24    16 */" -> bit offset, size.
std::optional<PaholeMember> parse_comment(std::string_view line) {
  size_t c = line.find("/*");
  if (c == std::string_view::npos) return std::nullopt;
  std::string rest(line.substr(c + 2));
  unsigned long off = 0, bit = 0, size = 0;
  int n = 0;
  if (std::sscanf(rest.c_str(), "%lu%n", &off, &n) != 1) return std::nullopt;
  const char* p = rest.c_str() + n;
  if (*p == ':') {
    int m = 0;
    if (std::sscanf(p + 1, "%lu%n", &bit, &m) != 1) return std::nullopt;
    p += 1 + m;
  }
  if (std::sscanf(p, "%lu", &size) != 1) return std::nullopt;
  return PaholeMember{off * 8 + bit, size};
}

// The member name of a C declaration ("struct list_head tasks", "char comm[16]",
// "unsigned int x:1", "void (*fn)(int)").
std::string decl_name(std::string_view decl) {
  if (size_t fp = decl.find("(*"); fp != std::string_view::npos) {
    size_t close = decl.find(')', fp);
    return std::string(decl.substr(fp + 2, close - fp - 2));
  }
  if (size_t colon = decl.rfind(':'); colon != std::string_view::npos) decl = decl.substr(0, colon);
  while (!decl.empty() && decl.back() == ']') decl = decl.substr(0, decl.rfind('['));
  while (!decl.empty() && decl.back() == ' ') decl.remove_suffix(1);
  size_t start = decl.size();
  while (start > 0 &&
         (std::isalnum(static_cast<unsigned char>(decl[start - 1])) || decl[start - 1] == '_'))
    --start;
  return std::string(decl.substr(start));
}

// `pahole -C name` members by dotted path. pahole prints the members of inline
// struct/union types with offsets from the start of the outer struct; those of an
// anonymous one are reachable by their own names, those of a named one ("} adj_list;")
// as "adj_list.upper".
std::map<std::string, PaholeMember> pahole_members(const std::string& vmlinux,
                                                   const std::string& st) {
  std::string cmd = "pahole -F btf -C " + st + " " + vmlinux + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  std::vector<std::map<std::string, PaholeMember>> stack(1);
  char buf[4096];
  while (fgets(buf, sizeof buf, p) != nullptr) {
    std::string_view line(buf);
    if (line.empty() || line[0] != '\t') continue;  // "struct x {", "};", blank
    line = line.substr(line.find_first_not_of('\t'));
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.remove_suffix(1);
    if (line == "struct {" || line == "union {") {
      stack.emplace_back();
      continue;
    }
    size_t semi = line.find(';');
    auto where = parse_comment(line);
    if (semi == std::string_view::npos || line.substr(0, 2) == "/*") continue;
    if (line[0] == '}') {
      if (stack.size() < 2) continue;
      auto inner = std::move(stack.back());
      stack.pop_back();
      std::string name = decl_name(line.substr(1, semi - 1));
      std::string prefix = name.empty() ? "" : name + ".";
      if (!name.empty() && where) stack.back().emplace(name, *where);
      for (auto& [n, m] : inner) stack.back().emplace(prefix + n, m);
      continue;
    }
    // A function pointer's ';' comes after its parameter list.
    size_t decl_end =
        line.find("(*") != std::string_view::npos ? line.rfind(';', line.find("/*")) : semi;
    std::string name = decl_name(line.substr(0, decl_end));
    if (!name.empty() && where) stack.back().emplace(name, *where);
  }
  pclose(p);
  return stack.front();
}

class BtfReal : public ::testing::TestWithParam<std::string> {
 protected:
  static Types load(const testing::KernelImage& k) {
    auto btf = read_vmlinux_btf(k.elf);
    EXPECT_TRUE(btf) << btf.error().to_string();
    auto t = Types::from_btf_bytes(*btf);
    EXPECT_TRUE(t) << t.error().to_string();
    return std::move(t).value();
  }
};

TEST_P(BtfReal, VersionDependentLayouts) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  Types types = load(*kernel);
  int ver = release_version(kernel->release);
  EXPECT_GT(types.type_count(), 50000u);

  // task_struct.state -> __state: "sched: Change task_struct::state" (5.14).
  EXPECT_EQ(types.has_member("task_struct", "__state"), ver >= 514);
  EXPECT_EQ(types.has_member("task_struct", "state"), ver < 514);
  // mm->mmap list -> maple tree mm_mt (6.1).
  EXPECT_EQ(types.has_member("mm_struct", "mm_mt"), ver >= 601);
  EXPECT_EQ(types.has_member("mm_struct", "mmap"), ver < 601);
  // signal->thread_head exists since 3.14 (for_each_thread); what 6.7 did is drop
  // task->thread_group ("kill task_struct->thread_group").
  EXPECT_TRUE(types.has_member("signal_struct", "thread_head"));
  EXPECT_EQ(types.has_member("task_struct", "thread_group"), ver < 607);
  // module core_layout -> mem[MOD_MEM_NUM_TYPES] ("module: replace module_layout with
  // module_memory", 6.4).
  EXPECT_EQ(types.has_member("module", "mem"), ver >= 604);
  EXPECT_EQ(types.has_member("module", "core_layout"), ver < 604);

  auto comm = types.member("task_struct", "comm");
  ASSERT_TRUE(comm) << comm.error().to_string();
  EXPECT_EQ(comm->size, 16u);
  auto arr = types.array(comm->type);
  ASSERT_TRUE(arr);
  EXPECT_EQ(arr->count, 16u);
  auto elem = types.integer(arr->element);
  ASSERT_TRUE(elem);
  EXPECT_EQ(elem->size, 1u);
  EXPECT_EQ(types.name(arr->element), "char");  // pahole does not set BTF_INT_CHAR

  auto lh = types.size_of("list_head");
  ASSERT_TRUE(lh);
  EXPECT_EQ(*lh, 16u);

  auto tasks = types.member("task_struct", "tasks");
  ASSERT_TRUE(tasks);
  EXPECT_EQ(types.name(types.resolve(tasks->type)), "list_head");
  EXPECT_TRUE(types.is(tasks->type, TypeKind::struct_));

  auto mm = types.member("task_struct", "mm");
  ASSERT_TRUE(mm);
  EXPECT_TRUE(types.is(mm->type, TypeKind::pointer));
  auto mm_t = types.pointee(mm->type);
  ASSERT_TRUE(mm_t);
  EXPECT_EQ(types.name(types.resolve(*mm_t)), "mm_struct");

  // pid is a typedef (pid_t) of a signed 4-byte int.
  auto pid = types.member("task_struct", "pid");
  ASSERT_TRUE(pid);
  EXPECT_EQ(types.kind(pid->type), TypeKind::typedef_);
  auto pid_int = types.integer(pid->type);
  ASSERT_TRUE(pid_int);
  EXPECT_EQ(pid_int->size, 4u);
  EXPECT_TRUE(pid_int->is_signed);

  auto tgid = types.enum_value("PIDTYPE_TGID");
  ASSERT_TRUE(tgid) << tgid.error().to_string();
  EXPECT_EQ(*tgid, 1);
  auto max = types.enum_value("pid_type", "PIDTYPE_MAX");
  ASSERT_TRUE(max) << max.error().to_string();
  EXPECT_EQ(*max, 4);

  // Errors say why.
  auto none = types.find_struct("nfm_no_such_struct");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::not_found);
  auto through_ptr = types.member("task_struct", "signal.nr_threads");
  ASSERT_FALSE(through_ptr);
  EXPECT_EQ(through_ptr.error().code, Errc::invalid_argument);
  EXPECT_NE(through_ptr.error().message.find("pointer"), std::string::npos)
      << through_ptr.error().message;
  auto missing = types.member("task_struct", "nfm_nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "struct task_struct has no member 'nfm_nope'");
}

// Top-level named members as libbpf's own btf_member records give them, against
// the path resolver (which also has to find members of anonymous unions).
TEST_P(BtfReal, ResolverAgreesWithRawMembers) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  Types types = load(*kernel);
  for (const char* st : {"task_struct", "mm_struct", "sock", "net_device", "file"}) {
    auto id = types.find_struct(st);
    ASSERT_TRUE(id) << st;
    const struct btf_type* t = btf__type_by_id(types.libbpf(), id->id);
    int checked = 0;
    for (unsigned i = 0; i < btf_vlen(t); ++i) {
      const char* name = btf__name_by_offset(types.libbpf(), btf_members(t)[i].name_off);
      if (name == nullptr || *name == '\0') continue;
      auto f = types.member(*id, name);
      ASSERT_TRUE(f) << st << "." << name << ": " << f.error().to_string();
      EXPECT_EQ(f->bit_offset, btf_member_bit_offset(t, i)) << st << "." << name;
      ++checked;
    }
    EXPECT_GT(checked, 0) << st;
  }
}

// The in-place reader against libbpf's parse of the same kernel BTF, for every
// type: the same record, name and size. And the profile cache's route (the bytes
// and index of one Types read in place by another) gives the same answers.
TEST_P(BtfReal, InPlaceReadsAgreeWithLibbpfForEveryType) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  Types types = load(*kernel);
  const struct btf* libbpf = types.libbpf();
  ASSERT_NE(libbpf, nullptr);
  ASSERT_EQ(types.type_count(), btf__type_cnt(libbpf));
  ASSERT_GT(types.type_count(), 10000u);  // a kernel's BTF, not a stub
  size_t sized = 0;
  for (uint32_t id = 1; id < types.type_count(); ++id) {
    const struct btf_type* ours = types.record(TypeRef{id});
    const struct btf_type* theirs = btf__type_by_id(libbpf, id);
    ASSERT_NE(ours, nullptr) << id;
    ASSERT_EQ(std::memcmp(ours, theirs, sizeof *ours), 0) << "type " << id;
    ASSERT_EQ(types.string_at(ours->name_off),
              std::string_view(btf__name_by_offset(libbpf, theirs->name_off)))
        << "type " << id;
    const int64_t want = btf__resolve_size(libbpf, id);
    auto got = types.size_of(TypeRef{id});
    ASSERT_EQ(got.ok(), want >= 0) << "type " << id;
    if (got) {
      ASSERT_EQ(static_cast<int64_t>(*got), want) << "type " << id;
      ++sized;
    }
  }
  EXPECT_GT(sized, 10000u);
  EXPECT_EQ(types.record(TypeRef{types.type_count()}), nullptr);
  EXPECT_EQ(types.string_at(UINT32_MAX), "");

  auto in_place = Types::from_checked_btf(types.bytes(), nullptr, types.index());
  ASSERT_TRUE(in_place) << in_place.error().to_string();
  for (const char* path : {"tasks", "mm", "se.sum_exec_runtime", "comm[3]"}) {
    auto a = types.member("task_struct", path);
    auto b = in_place->member("task_struct", path);
    ASSERT_TRUE(a && b) << path;
    EXPECT_EQ(a->bit_offset, b->bit_offset) << path;
    EXPECT_EQ(a->size, b->size) << path;
  }
  EXPECT_EQ(types.enum_value("PIDTYPE_TGID").value(), in_place->enum_value("PIDTYPE_TGID").value());
  EXPECT_EQ(in_place->libbpf() != nullptr, true);  // parsed on demand from the bytes
}

TEST_P(BtfReal, OffsetsMatchPahole) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  if (!have_pahole()) GTEST_SKIP() << "pahole not installed (apt-get install dwarves)";
  Types types = load(*kernel);
  TempVmlinux file(*kernel);
  const std::string& path = file.path;
  size_t total = 0;
  for (const char* st :
       {"task_struct", "mm_struct", "signal_struct", "list_head", "files_struct", "net_device",
        "sock_common", "module", "vm_area_struct", "sched_entity", "cred", "inode"}) {
    auto ph = pahole_members(path, st);
    ASSERT_GT(ph.size(), 1u) << "pahole printed nothing for " << st;
    for (const auto& [name, want] : ph) {
      auto f = types.member(st, name);
      ASSERT_TRUE(f) << st << "." << name << ": " << f.error().to_string();
      EXPECT_EQ(f->bit_offset, want.bit_offset) << st << "." << name;
      EXPECT_EQ(f->size, want.size) << st << "." << name;
    }
    total += ph.size();
  }
  EXPECT_GT(total, 500u);
  std::printf("  %s: %zu members compared with pahole\n", kernel->release.c_str(), total);

  // A nested path = sum of the two pahole offsets.
  auto task = pahole_members(path, "task_struct");
  auto se = pahole_members(path, "sched_entity");
  auto f = types.member("task_struct", "se.sum_exec_runtime");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->bit_offset, task.at("se").bit_offset + se.at("sum_exec_runtime").bit_offset);
  EXPECT_EQ(f->size, 8u);

  // Array subscript: comm[3] is 3 bytes in.
  auto c3 = types.member("task_struct", "comm[3]");
  ASSERT_TRUE(c3) << c3.error().to_string();
  EXPECT_EQ(c3->bit_offset, task.at("comm").bit_offset + 24);
  EXPECT_EQ(c3->size, 1u);
  EXPECT_FALSE(types.member("task_struct", "comm[16]"));
}

// Repeated lookups return the same answer as the first (they are served from the
// cache; their speed is measured in bench/, never asserted in a test).
TEST_P(BtfReal, CachedLookupsAgreeWithTheFirst) {
  NFM_LOAD_KERNEL_OR_SKIP(kernel);
  Types types = load(*kernel);
  auto task = types.find_struct("task_struct");
  ASSERT_TRUE(task);
  auto first = types.member(*task, "se.sum_exec_runtime");
  ASSERT_TRUE(first);
  Types copy = types;  // copies share the cache
  for (int i = 0; i < 1000; ++i) {
    auto again = (i % 2 ? copy : types).member(*task, "se.sum_exec_runtime");
    ASSERT_TRUE(again);
    ASSERT_EQ(again->offset, first->offset);
    ASSERT_EQ(again->size, first->size);
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, BtfReal, ::testing::ValuesIn(testing::kernel_params()),
                         testing::param_name);

}  // namespace
}  // namespace nfm
