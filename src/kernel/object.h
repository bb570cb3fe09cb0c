// Typed kernel objects: read guest memory by field name, the way C reads it.
//
//   ObjectContext ctx = object_context(kernel);
//   NFM_ASSIGN(Object init, var(ctx, "init_task", "task_struct"));
//   init.member("comm").as_string();              // "swapper/0"
//   init.arrow("real_parent");                    // *init_task.real_parent
//   for_each_entry(init.member("tasks").value(), "task_struct", "tasks", 100000,
//                  [](const Object& task) { ...; return true; });
//
// An Object is {context, address, type}: nothing is read until asked for, and
// nothing is cached (a live guest changes under us; Kernel::begin_crawl() owns
// caching policy). Layouts come from BTF, so no offsets are hard-coded.
//
// One member model for both ways of reading: a member is resolved by
// Types::member() into a FieldSlot (kernel/layout.h) and its value decoded by
// layout.h's loaders, whether an Object reads it lazily from guest memory or a
// feature decodes it from a copy of the whole object (hot loops: one read per object).
// Every list walk goes through kernel/walk.h: bounded and cycle-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "arch/address_space.h"
#include "kernel/btf_types.h"
#include "kernel/layout.h"
#include "kernel/walk.h"
#include "util/result.h"

namespace nfm {

class Kernel;

// What objects read through. Decoupled from Kernel so that a vmlinux image
// (ElfAddressSpace + its .BTF + its kallsyms) or a fake space can stand in.
// Must outlive every Object made from it.
struct ObjectContext {
  AddressSpace* space = nullptr;
  const Types* types = nullptr;
  std::function<Result<uint64_t>(std::string_view)> symbol;  // name -> address
};

// The context of an attached kernel (its page-table space, BTF and symbols).
ObjectContext object_context(Kernel& kernel);

class Object {
 public:
  Object(const ObjectContext& ctx, uint64_t address, TypeRef type)
      : ctx_(&ctx), address_(address), type_(type) {}

  const ObjectContext& context() const { return *ctx_; }
  uint64_t address() const { return address_; }  // bitfields: the byte holding bit 0
  TypeRef type() const { return type_; }
  bool is_bitfield() const { return bitfield_bits_ != 0; }
  std::string type_name() const;  // C spelling: "struct task_struct *", "char [16]"
  Result<uint64_t> size() const;  // bitfields: their storage unit

  // An embedded member by path: "comm", "se.sum_exec_runtime", "name.sysname",
  // "comm[0]". Pointers are not followed (use arrow/deref).
  Result<Object> member(std::string_view path) const;
  // *this, for a pointer. NULL and non-kernel addresses are Errc::fault.
  Result<Object> deref() const;
  // member(path).deref(): "task.arrow("mm")" is *task->mm.
  Result<Object> arrow(std::string_view path) const;
  // Element i of an array (bounds-checked against the BTF count; flexible
  // arrays are not) or of the array a pointer points to.
  Result<Object> index(uint64_t i) const;
  // The same address seen as another type (for void * and the like).
  Result<Object> cast(std::string_view type_name) const;

  // Integers, enums, bools and pointers, by their BTF size; bitfields are
  // extracted. as_signed() sign-extends only types that are signed.
  Result<uint64_t> as_unsigned() const;
  Result<int64_t> as_signed() const;
  Result<bool> as_bool() const;
  Result<uint64_t> as_pointer() const;  // the raw value of a pointer-typed object
  // A char array (up to its length and `max`) or char pointer (up to `max`
  // bytes), stopping at the first NUL.
  Result<std::string> as_string(size_t max = 4096) const;

 private:
  // The bytes an integer or pointer occupies, and where its value lies in them.
  struct Bytes {
    uint8_t data[16] = {};
    size_t length = 0;
    FieldSlot slot;
    std::span<const uint8_t> span() const { return {data, length}; }
  };
  Result<Bytes> read_bytes() const;

  const ObjectContext* ctx_;
  uint64_t address_;
  TypeRef type_;
  uint8_t bit_shift_ = 0;      // bitfields: bit 0's position within address_'s byte
  uint8_t bitfield_bits_ = 0;  // width if a bitfield
};

// A NUL-terminated string of at most `max` bytes at `va` (no terminator needed at
// max): what every char array and char * of the kernel is read with.
Result<std::string> read_c_string(AddressSpace& space, uint64_t va, size_t max);

// A global by symbol name. BTF describes few globals (only per-cpu ones as VAR
// on most kernels), so the type is named: a struct/union name first, then any
// named type (typedef, int). An empty `type_name` uses the symbol's BTF VAR.
Result<Object> var(const ObjectContext& ctx, std::string_view symbol,
                   std::string_view type_name = {});

// The struct_name holding `member_path` at `member_address` (the kernel macro).
Result<Object> container_of(const ObjectContext& ctx, uint64_t member_address,
                            std::string_view struct_name, std::string_view member_path);

namespace detail {
// Checks that `head` is a `head_type` and struct_name.member_path a `node_type`;
// returns the member's offset and the struct's type.
struct EntryLayout {
  uint64_t offset = 0;
  TypeRef type;
};
Result<EntryLayout> entry_layout(const Object& head, std::string_view head_type,
                                 std::string_view struct_name, std::string_view member_path,
                                 std::string_view node_type);
}  // namespace detail

// list_for_each_entry: `head` is a struct list_head object; visits each
// struct_name whose `member_path` list_head is on the list. `visit(Object)`
// returns false to stop early. Errors are for wrong names/types; how the walk
// ended (complete, limit, cycle, torn, bad_pointer) is in the WalkResult.
template <typename Visit>
Result<WalkResult> for_each_entry(const Object& head, std::string_view struct_name,
                                  std::string_view member_path, size_t max_nodes, Visit&& visit) {
  NFM_ASSIGN(auto layout,
             detail::entry_layout(head, "list_head", struct_name, member_path, "list_head"));
  const ObjectContext& ctx = head.context();
  return walk_list(*ctx.space, head.address(), max_nodes, [&](uint64_t node) {
    return visit(Object(ctx, node - layout.offset, layout.type));
  });
}

// hlist_for_each_entry: `head` is a struct hlist_head object, member_path an
// hlist_node.
template <typename Visit>
Result<WalkResult> for_each_hlist_entry(const Object& head, std::string_view struct_name,
                                        std::string_view member_path, size_t max_nodes,
                                        Visit&& visit) {
  NFM_ASSIGN(auto layout,
             detail::entry_layout(head, "hlist_head", struct_name, member_path, "hlist_node"));
  NFM_ASSIGN(Object first_field, head.member("first"));
  NFM_ASSIGN(uint64_t first, first_field.as_pointer());
  const ObjectContext& ctx = head.context();
  return walk_hlist(*ctx.space, first, max_nodes, [&](uint64_t node) {
    return visit(Object(ctx, node - layout.offset, layout.type));
  });
}

}  // namespace nfm
