// Typed objects: on real vmlinux images (statically initialised init_task and
// init_uts_ns, read at their link addresses), and on a synthetic BTF over fake
// memory for bitfields and list-walk edge cases.
#include <bpf/btf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kernel/object.h"
#include "kernel/profile/kallsyms.h"
#include "test_vmlinuz_kernels.h"

namespace nfm {
namespace {

// ---------------------------------------------------------------- real images

struct ImageContext {
  std::shared_ptr<const testing::KernelImage> image;
  std::unique_ptr<ElfAddressSpace> space;
  std::unique_ptr<Types> types;
  SymbolTable symbols;
  ObjectContext ctx;
};

// One per release per test program: decoding kallsyms takes a moment.
const ImageContext* image_context(const std::shared_ptr<const testing::KernelImage>& k) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<ImageContext>> cache;
  std::lock_guard lock(mu);
  auto& slot = cache[k->release];
  if (slot) return slot.get();
  auto c = std::make_unique<ImageContext>();
  c->image = k;
  c->space = std::make_unique<ElfAddressSpace>(k->elf);
  auto btf = read_vmlinux_btf(k->elf);
  if (!btf) return nullptr;
  auto types = Types::from_btf_bytes(*btf);
  auto syms = read_vmlinux_kallsyms(k->elf);
  if (!types || !syms) return nullptr;
  c->types = std::make_unique<Types>(std::move(types).value());
  c->symbols = std::move(syms).value();
  const SymbolTable* table = &c->symbols;
  c->ctx = ObjectContext{c->space.get(), c->types.get(),
                         [table](std::string_view n) { return table->lookup(n); }};
  slot = std::move(c);
  return slot.get();
}

class ObjectReal : public ::testing::TestWithParam<std::string> {};

// `ctx` names the variable it declares: it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define LOAD_CTX_OR_SKIP(ctx)                                     \
  NFM_LOAD_KERNEL_OR_SKIP(kernel_image);                          \
  const ImageContext* ctx##_holder = image_context(kernel_image); \
  ASSERT_NE(ctx##_holder, nullptr);                               \
  const ObjectContext& ctx = ctx##_holder->ctx
// NOLINTEND(bugprone-macro-parentheses)

TEST_P(ObjectReal, InitTaskScalarsAndStrings) {
  LOAD_CTX_OR_SKIP(ctx);
  auto init = var(ctx, "init_task", "task_struct");
  ASSERT_TRUE(init) << init.error().to_string();
  EXPECT_EQ(init->address(), *ctx.symbol("init_task"));
  EXPECT_EQ(init->type_name(), "struct task_struct");
  EXPECT_EQ(*init->size(), *ctx.types->size_of("task_struct"));

  auto comm = init->member("comm");
  ASSERT_TRUE(comm) << comm.error().to_string();
  EXPECT_EQ(comm->type_name(), "char [16]");
  auto s = comm->as_string();
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(*s, "swapper");  // INIT_TASK_COMM
  EXPECT_EQ(*comm->as_string(4), "swap");
  EXPECT_EQ(*init->member("comm[0]")->as_unsigned(), uint64_t{'s'});
  EXPECT_EQ(*comm->index(1)->as_unsigned(), uint64_t{'w'});
  auto out = comm->index(16);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::limit);
  EXPECT_FALSE(init->member("comm[16]"));

  auto pid = init->member("pid");
  ASSERT_TRUE(pid);
  EXPECT_EQ(*pid->as_signed(), 0);
  EXPECT_EQ(pid->type_name(), "pid_t");
  // A string read of a non-string is refused, not guessed.
  EXPECT_EQ(pid->as_string().error().code, Errc::invalid_argument);

  auto uts = var(ctx, "init_uts_ns", "uts_namespace");
  ASSERT_TRUE(uts) << uts.error().to_string();
  EXPECT_EQ(*uts->member("name.sysname")->as_string(), "Linux");
}

TEST_P(ObjectReal, InitTaskPointers) {
  LOAD_CTX_OR_SKIP(ctx);
  auto init = *var(ctx, "init_task", "task_struct");

  auto parent = init.arrow("real_parent");
  ASSERT_TRUE(parent) << parent.error().to_string();
  EXPECT_EQ(parent->address(), init.address());
  EXPECT_EQ(parent->type(), init.type());
  EXPECT_EQ(init.member("real_parent")->type_name(), "struct task_struct *");
  EXPECT_EQ(*init.member("real_parent")->as_pointer(), init.address());
  // p[0] is *p.
  EXPECT_EQ(init.member("real_parent")->index(0)->address(), init.address());

  auto mm_ptr = init.member("mm");
  ASSERT_TRUE(mm_ptr);
  EXPECT_EQ(*mm_ptr->as_pointer(), 0u);
  EXPECT_FALSE(*mm_ptr->as_bool());
  auto mm = init.arrow("mm");
  ASSERT_FALSE(mm);
  EXPECT_EQ(mm.error().code, Errc::fault);
  EXPECT_NE(mm.error().message.find("NULL"), std::string::npos) << mm.error().message;
  EXPECT_NE(mm.error().message.find("mm_struct"), std::string::npos) << mm.error().message;

  // Dereferencing a non-pointer is a type error.
  EXPECT_EQ(init.member("pid")->deref().error().code, Errc::invalid_argument);
}

TEST_P(ObjectReal, InitTaskListAndContainerOf) {
  LOAD_CTX_OR_SKIP(ctx);
  auto init = *var(ctx, "init_task", "task_struct");
  auto tasks = init.member("tasks");
  ASSERT_TRUE(tasks);
  // LIST_HEAD_INIT(init_task.tasks): an empty list pointing at itself.
  EXPECT_EQ(*tasks->member("next")->as_pointer(), tasks->address());
  EXPECT_EQ(*tasks->member("prev")->as_pointer(), tasks->address());
  size_t visited = 0;
  auto r = for_each_entry(*tasks, "task_struct", "tasks", 100, [&](const Object&) {
    ++visited;
    return true;
  });
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->end, WalkEnd::complete);
  EXPECT_EQ(r->nodes, 0u);
  EXPECT_EQ(visited, 0u);

  auto owner = container_of(ctx, tasks->address(), "task_struct", "tasks");
  ASSERT_TRUE(owner) << owner.error().to_string();
  EXPECT_EQ(owner->address(), init.address());
  EXPECT_EQ(owner->type(), init.type());

  // The head must be a list_head and the member a list_head.
  EXPECT_EQ(for_each_entry(init, "task_struct", "tasks", 10, [](const Object&) { return true; })
                .error()
                .code,
            Errc::invalid_argument);
  EXPECT_EQ(for_each_entry(*tasks, "task_struct", "comm", 10, [](const Object&) { return true; })
                .error()
                .code,
            Errc::invalid_argument);
}

TEST_P(ObjectReal, BitfieldMatchesTheRawBytes) {
  LOAD_CTX_OR_SKIP(ctx);
  auto init = *var(ctx, "init_task", "task_struct");
  for (const char* name : {"sched_reset_on_fork", "sched_contributes_to_load", "in_execve"}) {
    SCOPED_TRACE(name);
    auto f = ctx.types->member(init.type(), name);
    ASSERT_TRUE(f) << f.error().to_string();
    ASSERT_GT(f->bitfield_bits, 0u);
    auto o = init.member(name);
    ASSERT_TRUE(o);
    EXPECT_TRUE(o->is_bitfield());
    uint8_t byte = 0;
    ASSERT_TRUE(ctx.space->read(init.address() + f->bit_offset / 8, &byte, 1));
    const unsigned expected = (byte >> (f->bit_offset % 8)) & ((1u << f->bitfield_bits) - 1);
    EXPECT_EQ(*o->as_unsigned(), expected);
    EXPECT_EQ(o->member("x").error().code, Errc::invalid_argument);
  }
}

TEST_P(ObjectReal, NamesThatDoNotExistAreNotFound) {
  LOAD_CTX_OR_SKIP(ctx);
  auto bad_type = var(ctx, "init_task", "no_such_struct_xyz");
  ASSERT_FALSE(bad_type);
  EXPECT_EQ(bad_type.error().code, Errc::not_found);
  EXPECT_NE(bad_type.error().message.find("no_such_struct_xyz"), std::string::npos);

  auto bad_sym = var(ctx, "no_such_symbol_xyz", "task_struct");
  ASSERT_FALSE(bad_sym);
  EXPECT_EQ(bad_sym.error().code, Errc::not_found);

  auto init = *var(ctx, "init_task", "task_struct");
  auto bad_member = init.member("no_such_member_xyz");
  ASSERT_FALSE(bad_member);
  EXPECT_EQ(bad_member.error().code, Errc::not_found);
  EXPECT_NE(bad_member.error().message.find("no_such_member_xyz"), std::string::npos);

  auto bad_container = container_of(ctx, init.address(), "task_struct", "nope_xyz");
  ASSERT_FALSE(bad_container);
  EXPECT_EQ(bad_container.error().code, Errc::not_found);
  EXPECT_NE(bad_container.error().message.find("nope_xyz"), std::string::npos);

  // No BTF VAR for init_task (only per-cpu variables get one): the type must be named.
  auto untyped = var(ctx, "init_task");
  if (!untyped) {
    EXPECT_EQ(untyped.error().code, Errc::not_found);
  }
}

TEST_P(ObjectReal, PerCpuVarFromBtf) {
  LOAD_CTX_OR_SKIP(ctx);
  // runqueues is DEFINE_PER_CPU_SHARED_ALIGNED(struct rq, ...): pahole emits a VAR
  // for per-cpu variables, except the one that built Debian's 5.10 (no VARs at all).
  size_t vars = 0;
  for (uint32_t id = 1; id < ctx.types->type_count(); ++id)
    vars += ctx.types->kind(TypeRef{id}) == TypeKind::var;
  auto rq = var(ctx, "runqueues");
  if (vars == 0) {
    ASSERT_FALSE(rq);
    EXPECT_EQ(rq.error().code, Errc::not_found);
    GTEST_SKIP() << "BTF has no VAR types";
  }
  ASSERT_TRUE(rq) << rq.error().to_string();
  EXPECT_EQ(rq->type_name(), "struct rq");
}

INSTANTIATE_TEST_SUITE_P(Kernels, ObjectReal, ::testing::ValuesIn(testing::kernel_params()),
                         testing::param_name);

// ------------------------------------------------- synthetic BTF, fake memory

constexpr uint64_t kBase = 0xffff888000000000ULL;

// A flat window of guest memory at kBase; reads outside it fault.
class ByteSpace : public AddressSpace {
 public:
  std::vector<uint8_t> bytes = std::vector<uint8_t>(size_t{64} * 1024);
  Result<void> read(uint64_t va, void* dst, size_t len) override {
    if (va < kBase || va - kBase + len > bytes.size()) return fault_at(va, "unmapped");
    std::memcpy(dst, bytes.data() + (va - kBase), len);
    return {};
  }
  Result<uint64_t> translate(uint64_t va) override { return va; }
  template <typename T>
  void put(uint64_t va, T v) {
    std::memcpy(bytes.data() + (va - kBase), &v, sizeof v);
  }
};

// struct list_head { struct list_head *next, *prev; };
// struct hlist_node { struct hlist_node *next, **pprev; };
// struct hlist_head { struct hlist_node *first; };
// struct item {                       // 48 bytes
//   int id;                           // 0
//   unsigned int flag : 1;            // bit 32
//   int delta : 5;                    // bits 33..37 (signed)
//   unsigned int wide : 12;           // bits 38..49: straddles three bytes
//   struct list_head link;            // 8
//   struct hlist_node hnode;          // 24
//   char *label;                      // 40
// };
class Synthetic : public ::testing::Test {
 protected:
  void SetUp() override {
    struct btf* b = btf__new_empty();
    ASSERT_NE(b, nullptr);
    const int i32 = btf__add_int(b, "int", 4, BTF_INT_SIGNED);
    const int u32 = btf__add_int(b, "unsigned int", 4, 0);
    const int chr = btf__add_int(b, "char", 1, BTF_INT_SIGNED);
    // Fields must follow their struct, so pointers to a struct are made first,
    // by the id the struct is about to get (the next one).
    const int list_ptr = btf__add_ptr(b, static_cast<int>(btf__type_cnt(b)) + 1);
    const int list = btf__add_struct(b, "list_head", 16);
    btf__add_field(b, "next", list_ptr, 0, 0);
    btf__add_field(b, "prev", list_ptr, 64, 0);
    const int hnode_pp = btf__add_ptr(b, static_cast<int>(btf__type_cnt(b)) + 1);
    const int hnode_ptr = btf__add_ptr(b, static_cast<int>(btf__type_cnt(b)) + 1);
    const int hnode = btf__add_struct(b, "hlist_node", 16);
    ASSERT_EQ(hnode, hnode_ptr + 1);
    btf__add_field(b, "next", hnode_ptr, 0, 0);
    btf__add_field(b, "pprev", hnode_pp, 64, 0);
    btf__add_struct(b, "hlist_head", 8);
    btf__add_field(b, "first", hnode_ptr, 0, 0);
    const int char_ptr = btf__add_ptr(b, chr);
    btf__add_struct(b, "item", 48);
    btf__add_field(b, "id", i32, 0, 0);
    btf__add_field(b, "flag", u32, 32, 1);
    btf__add_field(b, "delta", i32, 33, 5);
    btf__add_field(b, "wide", u32, 38, 12);
    btf__add_field(b, "link", list, 64, 0);
    btf__add_field(b, "hnode", hnode, 192, 0);
    btf__add_field(b, "label", char_ptr, 320, 0);
    uint32_t size = 0;
    const void* raw = btf__raw_data(b, &size);
    auto t = Types::from_btf_bytes({static_cast<const uint8_t*>(raw), size});
    btf__free(b);
    ASSERT_TRUE(t) << t.error().to_string();
    types = std::make_unique<Types>(std::move(t).value());
    ctx = ObjectContext{&space, types.get(), [](std::string_view n) -> Result<uint64_t> {
                          if (n == "head") return kBase;
                          return make_error(Errc::not_found, std::string(n));
                        }};
  }

  // item i lives at kBase + 0x100 * (i + 1); the list head at kBase.
  static uint64_t item(int i) { return kBase + uint64_t{0x100} * static_cast<uint64_t>(i + 1); }
  void link(uint64_t node, uint64_t next, uint64_t prev) {
    space.put(node, next);
    space.put(node + 8, prev);
  }
  void make_list(int n) {
    std::vector<uint64_t> all{kBase};
    for (int i = 0; i < n; ++i) {
      all.push_back(item(i) + 8);
      space.put<int32_t>(item(i), 100 + i);
    }
    for (size_t i = 0; i < all.size(); ++i)
      link(all[i], all[(i + 1) % all.size()], all[(i + all.size() - 1) % all.size()]);
  }
  std::vector<int> walk(size_t max, WalkEnd expect, size_t stop_after = SIZE_MAX) {
    std::vector<int> ids;
    auto head = var(ctx, "head", "list_head");
    EXPECT_TRUE(head);
    auto r = for_each_entry(*head, "item", "link", max, [&](const Object& e) {
      ids.push_back(static_cast<int>(*e.member("id")->as_signed()));
      return ids.size() < stop_after;
    });
    EXPECT_TRUE(r) << r.error().to_string();
    if (r) {
      EXPECT_EQ(r->end, expect) << walk_end_name(r->end);
    }
    return ids;
  }

  ByteSpace space;
  std::unique_ptr<Types> types;
  ObjectContext ctx;
};

TEST_F(Synthetic, Bitfields) {
  const uint64_t at = item(0);
  Object it(ctx, at, *types->find_struct("item"));
  // flag=1, delta=-3 (0b11101), wide=0xabc, in bits 32..49.
  const uint64_t bits = (1ULL << 32) | (uint64_t{0b11101} << 33) | (uint64_t{0xabc} << 38);
  space.put<uint64_t>(at, bits | 0x7fffffff);  // id, and neighbours that must not leak in
  EXPECT_EQ(*it.member("flag")->as_unsigned(), 1u);
  EXPECT_TRUE(*it.member("flag")->as_bool());
  EXPECT_EQ(*it.member("delta")->as_signed(), -3);
  EXPECT_EQ(*it.member("delta")->as_unsigned(), 0b11101u);
  EXPECT_EQ(*it.member("wide")->as_unsigned(), 0xabcu);
  EXPECT_EQ(*it.member("wide")->as_signed(), 0xabc);  // unsigned: no sign extension
  EXPECT_EQ(*it.member("id")->as_signed(), 0x7fffffff);
  EXPECT_EQ(it.member("wide")->type_name(), "unsigned int :12");

  space.put<uint64_t>(at, ~bits);  // every other bit set
  EXPECT_EQ(*it.member("flag")->as_unsigned(), 0u);
  EXPECT_EQ(*it.member("delta")->as_signed(), 2);  // 0b00010
  EXPECT_EQ(*it.member("wide")->as_unsigned(), 0xfffu & ~0xabcu);
}

// Objects and FieldSlots are one member model: a member read through an Object
// equals the same member decoded from a copy of the whole object.
TEST_F(Synthetic, ObjectAndSlotDecodeAlike) {
  const uint64_t at = item(0);
  Object it(ctx, at, *types->find_struct("item"));
  for (uint64_t pattern : {0x0002'2b3a'7fff'ffffULL, 0xfffd'd4c5'8000'0001ULL, ~0ULL, 0ULL}) {
    space.put<uint64_t>(at, pattern);
    std::vector<uint8_t> copy(48);
    ASSERT_TRUE(space.read(at, copy.data(), copy.size()));
    for (const char* name : {"id", "flag", "delta", "wide"}) {
      auto slot = required_slot(*types, "item", name);
      ASSERT_TRUE(slot) << name;
      auto member = it.member(name);
      ASSERT_TRUE(member) << name;
      EXPECT_EQ(*member->as_unsigned(), load_unsigned(copy, *slot)) << name << " " << pattern;
      auto i = types->integer(member->type());
      if (i && i->is_signed) {
        EXPECT_EQ(*member->as_signed(), load_signed(copy, *slot)) << name << " " << pattern;
      }
    }
  }
}

// A packed 62-bit field starting at bit 4 touches 9 bytes: none of them is lost.
TEST(FieldSlot, BitfieldPastEightBytes) {
  const uint64_t value = 0x2bad'cafe'f00d'1234ULL & ((1ULL << 62) - 1);
  std::vector<uint8_t> bytes(9);
  const unsigned __int128 wide = static_cast<unsigned __int128>(value) << 4 | 0xf;
  std::memcpy(bytes.data(), &wide, bytes.size());
  const FieldSlot slot{0, 8, 4, 62, true};
  EXPECT_EQ(load_unsigned(bytes, slot), value);
  // A short copy gives what it holds, never reads past it.
  EXPECT_EQ(load_unsigned(std::span(bytes).first(8), slot), value & ((1ULL << 60) - 1));
}

TEST_F(Synthetic, CharPointerStrings) {
  Object it(ctx, item(0), *types->find_struct("item"));
  EXPECT_EQ(it.member("label")->as_string().error().code, Errc::fault);  // NULL
  space.put<uint64_t>(item(0) + 40, kBase + 0x2000);
  std::memcpy(space.bytes.data() + 0x2000, "hello", 6);
  EXPECT_EQ(*it.member("label")->as_string(), "hello");
  EXPECT_EQ(*it.member("label")->as_string(3), "hel");
  EXPECT_EQ(*it.member("label")->index(1)->as_unsigned(), uint64_t{'e'});
  // A string running into unmapped memory faults rather than returning garbage.
  space.put<uint64_t>(item(0) + 40, kBase + space.bytes.size() - 3);
  std::memset(space.bytes.data() + space.bytes.size() - 3, 'x', 3);
  EXPECT_EQ(it.member("label")->as_string().error().code, Errc::fault);
  // A user-space or non-canonical pointer is not followed.
  space.put<uint64_t>(item(0) + 40, 0x00007fff12345678ULL);
  auto r = it.arrow("label");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::fault);
  EXPECT_EQ(r.error().address, 0x00007fff12345678ULL);
}

TEST_F(Synthetic, ListVisitsEntriesInOrder) {
  make_list(5);
  EXPECT_EQ(walk(100, WalkEnd::complete), (std::vector<int>{100, 101, 102, 103, 104}));
  EXPECT_EQ(walk(100, WalkEnd::complete, 2), (std::vector<int>{100, 101}));  // visitor stops
  EXPECT_EQ(walk(3, WalkEnd::limit), (std::vector<int>{100, 101, 102}));
}

TEST_F(Synthetic, ListLoopIsCaught) {
  make_list(4);
  // 3 -> 1 instead of -> head. A loop that misses the head cannot keep every
  // prev pointer consistent (1->prev would be both 0 and 3), so it shows as torn.
  link(item(3) + 8, item(1) + 8, item(2) + 8);
  link(item(1) + 8, item(2) + 8, item(3) + 8);
  EXPECT_EQ(walk(1000, WalkEnd::torn), (std::vector<int>{100}));
}

TEST_F(Synthetic, ListNullLink) {
  make_list(3);
  link(item(1) + 8, 0, item(0) + 8);
  EXPECT_EQ(walk(100, WalkEnd::bad_pointer), (std::vector<int>{100, 101}));
}

TEST_F(Synthetic, HlistWalk) {
  // head.first -> 0 -> 1 -> 2 -> NULL (hnode at +24; pprev unchecked by walk_hlist).
  const uint64_t head = kBase + 0x80;
  space.put(head, item(0) + 24);
  for (int i = 0; i < 3; ++i) {
    space.put<int32_t>(item(i), 200 + i);
    space.put<uint64_t>(item(i) + 24, i < 2 ? item(i + 1) + 24 : 0);
  }
  Object h(ctx, head, *types->find_struct("hlist_head"));
  std::vector<int> ids;
  auto visit = [&](const Object& e) {
    ids.push_back(static_cast<int>(*e.member("id")->as_signed()));
    return true;
  };
  auto r = for_each_hlist_entry(h, "item", "hnode", 100, visit);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->end, WalkEnd::complete);
  EXPECT_EQ(ids, (std::vector<int>{200, 201, 202}));

  // 2 -> 0: a cycle, caught within a bound of a few laps.
  space.put<uint64_t>(item(2) + 24, item(0) + 24);
  ids.clear();
  r = for_each_hlist_entry(h, "item", "hnode", 100, visit);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->end, WalkEnd::cycle);
  EXPECT_LT(ids.size(), 20u);

  // Empty: first == NULL.
  space.put<uint64_t>(head, 0);
  ids.clear();
  r = for_each_hlist_entry(h, "item", "hnode", 100, visit);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->end, WalkEnd::complete);
  EXPECT_TRUE(ids.empty());

  // A list_head member is not an hlist_node.
  EXPECT_EQ(for_each_hlist_entry(h, "item", "link", 100, visit).error().code,
            Errc::invalid_argument);
}

}  // namespace
}  // namespace nfm
