// Kernel type layouts from BTF: a small typed wrapper over libbpf's struct btf.
//
// The crawler asks the same questions over and over ("offset of task_struct.tasks"),
// so names are indexed once (sorted arrays, storable with a cached profile so a warm
// start does not rebuild them) and member paths are memoized: every lookup is a hash
// probe after the first. A Types is cheap to copy (shared, immutable data;
// the member cache is internally locked), so 100 VMs on one kernel share one.
//
// Feature detection goes through has_member()/find_struct(), never version numbers
// (DESIGN.md §4): e.g. task_struct.__state (5.14+) vs .state.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

struct btf;
struct btf_type;

namespace nfm {

// A BTF type id. 0 is `void`.
struct TypeRef {
  uint32_t id = 0;
  bool is_void() const { return id == 0; }
  friend bool operator==(TypeRef, TypeRef) = default;
};

enum class TypeKind {
  void_,
  int_,
  pointer,
  array,
  struct_,
  union_,
  enum_,
  fwd,
  typedef_,
  volatile_,
  const_,
  restrict_,
  func,
  func_proto,
  var,
  datasec,
  float_,
  decl_tag,
  type_tag,
  enum64,
  unknown,
};
const char* type_kind_name(TypeKind k);

struct Field {
  uint64_t offset = 0;         // bytes from the start of the outer type (bitfields: byte of bit 0)
  uint64_t bit_offset = 0;     // bits from the start of the outer type
  uint32_t bitfield_bits = 0;  // width if a bitfield, else 0
  uint64_t size = 0;           // byte size of the member's type (the storage unit, for bitfields)
  TypeRef type;                // as declared (may be a typedef / const)
};

struct ArrayInfo {
  TypeRef element;  // as declared
  uint32_t count = 0;
  uint64_t element_size = 0;
};

struct IntInfo {
  uint32_t size = 0;  // bytes
  bool is_signed = false;
  bool is_char = false;
  bool is_bool = false;
};

// Names -> type ids and enumerator values, sorted by name (equal names: the first
// definition first). Offsets are BTF string offsets. The layout is also the profile
// cache's on-disk format; `owner` keeps the arrays alive (a mapped file, or Types).
struct TypeIndex {
  struct Named {
    uint32_t name_offset;
    uint32_t id;
  };
  struct Enumerator {
    uint32_t name_offset;
    uint32_t reserved;
    int64_t value;
  };
  std::span<const Named> composites;  // struct/union
  std::span<const Named> named;       // typedef/int/enum/float
  std::span<const Enumerator> enumerators;
  std::shared_ptr<const void> owner;
};

class Types {
 public:
  // Parses a vmlinux BTF blob (e.g. the .BTF section, or __start_BTF..__stop_BTF
  // read from guest memory): the bytes are copied and validated by libbpf. With
  // `index` (one that index() gave for the same bytes), names are not indexed
  // again; its ids are checked against the BTF on use.
  static Result<Types> from_btf_bytes(std::span<const uint8_t> bytes,
                                      const TypeIndex* index = nullptr);
  // Bytes libbpf accepted before, with their index (the profile cache's, whose
  // checksum vouches for both), read in place while `owner` lives: a warm start
  // copies and parses nothing. Reads are still bounds-checked.
  static Result<Types> from_checked_btf(std::span<const uint8_t> bytes,
                                        std::shared_ptr<const void> owner, const TypeIndex& index);
  // The name index, for storing beside the BTF (spans into this Types).
  TypeIndex index() const;
  // Parses split BTF (a module's .BTF) on top of `base` (the vmlinux types it
  // was built against). Type ids continue after the base's; lookups find the
  // base's types too, and the result keeps `base` alive.
  static Result<Types> from_split_btf_bytes(std::span<const uint8_t> bytes, const Types& base);

  // Named struct or union (not a forward declaration).
  Result<TypeRef> find_struct(std::string_view name) const;
  // Any named type: struct/union, typedef, int, enum, float.
  Result<TypeRef> find_type(std::string_view name) const;

  // A member by dotted path through *embedded* structs/unions ("signal" is a
  // pointer, so "signal.thread_head" is asked of signal_struct, not task_struct;
  // "se.sum_exec_runtime" works). Members of anonymous structs/unions are found
  // by their own names; "name[3]" indexes an array member. Offsets are relative
  // to `outer`.
  Result<Field> member(TypeRef outer, std::string_view path) const;
  Result<Field> member(std::string_view struct_name, std::string_view path) const;
  bool has_member(TypeRef outer, std::string_view path) const;
  bool has_member(std::string_view struct_name, std::string_view path) const;

  Result<uint64_t> size_of(TypeRef t) const;
  Result<uint64_t> size_of(std::string_view struct_name) const;

  // Strips typedef, const, volatile, restrict and type tags.
  TypeRef resolve(TypeRef t) const;
  TypeKind kind(TypeRef t) const;  // of `t` itself (not resolved)
  bool is(TypeRef t, TypeKind k) const { return kind(resolve(t)) == k; }
  std::string_view name(TypeRef t) const;  // "" for anonymous types

  Result<TypeRef> pointee(TypeRef pointer) const;  // resolves first
  Result<ArrayInfo> array(TypeRef t) const;        // resolves first
  Result<IntInfo> integer(TypeRef t) const;        // ints and enums (resolves first)

  // An enumerator's value, e.g. enum_value("PIDTYPE_TGID"); enumerator names are
  // global in C, so the enum's name is optional.
  Result<int64_t> enum_value(std::string_view enumerator) const;
  Result<int64_t> enum_value(std::string_view enum_name, std::string_view enumerator) const;

  // A BTF VAR (per-cpu variables have them), by its name.
  Result<TypeRef> find_var(std::string_view name) const;

  uint32_t type_count() const;
  // The raw record of a type (libbpf's btf_* helpers read it), nullptr for void
  // and ids out of range; a string of the string section ("" if out of range).
  const struct btf_type* record(TypeRef t) const;
  std::string_view string_at(uint32_t offset) const;
  // The blob, as parsed (for storing it).
  std::span<const uint8_t> bytes() const;
  // libbpf's parse of the blob, made on first use (nullptr if libbpf refuses it).
  const struct btf* libbpf() const;

  struct Impl;

 private:
  explicit Types(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace nfm
