#include "kernel/object.h"

#include <bpf/btf.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "kernel/kernel.h"
#include "kernel/layout.h"

namespace nfm {

namespace {

constexpr size_t kPage = 4096;

// C spelling of a type, for messages and type_name(). Depth-bounded: BTF from a
// guest is input, and a malformed one could loop.
std::string spell(const Types& t, TypeRef r, int depth = 0) {
  if (depth > 16) return "...";
  std::string_view n = t.name(r);
  switch (t.kind(r)) {
    case TypeKind::void_:
      return "void";
    case TypeKind::struct_:
      return fmt::format("struct {}", n.empty() ? "(anon)" : n);
    case TypeKind::union_:
      return fmt::format("union {}", n.empty() ? "(anon)" : n);
    case TypeKind::enum_:
    case TypeKind::enum64:
      return fmt::format("enum {}", n.empty() ? "(anon)" : n);
    case TypeKind::fwd:
      return fmt::format("struct {}", n);
    case TypeKind::pointer: {
      auto p = t.pointee(r);
      return p ? spell(t, *p, depth + 1) + " *" : "? *";
    }
    case TypeKind::array: {
      auto a = t.array(r);
      return a ? fmt::format("{} [{}]", spell(t, a->element, depth + 1), a->count) : "? []";
    }
    case TypeKind::const_:
    case TypeKind::volatile_:
    case TypeKind::restrict_:
    case TypeKind::type_tag: {
      // One step of resolve(): the modifier's target.
      const struct btf_type* bt = t.record(r);
      std::string_view q = t.kind(r) == TypeKind::const_      ? "const "
                           : t.kind(r) == TypeKind::volatile_ ? "volatile "
                                                              : "";
      return bt ? std::string(q) + spell(t, TypeRef{bt->type}, depth + 1) : "?";
    }
    case TypeKind::func_proto:
      return "function";
    default:
      return std::string(n);  // int, typedef, float
  }
}

// A one-byte integer: char, signed/unsigned char, u8. pahole does not set
// BTF_INT_CHAR, so the size is what tells.
bool is_byte(const Types& t, TypeRef r) {
  auto i = t.integer(r);
  return i && i->size == 1;
}

// A pointer value worth following, or why not.
Result<void> check_pointer(uint64_t p, uint64_t at, const std::string& type) {
  if (p == 0) return fault_at(0, fmt::format("NULL pointer ({}) read at {:#x}", type, at));
  if (!plausible_kernel_pointer(p, 1))
    return fault_at(p,
                    fmt::format("{:#x} ({}, read at {:#x}) is not a kernel address", p, type, at));
  return {};
}

}  // namespace

// Never across a page boundary in one go: the next page may be unmapped while
// the string ends first.
Result<std::string> read_c_string(AddressSpace& space, uint64_t va, size_t max) {
  std::string out;
  char chunk[64];
  while (out.size() < max) {
    const size_t n = std::min({sizeof chunk, kPage - (va % kPage), max - out.size()});
    NFM_TRY(space.read(va, chunk, n));
    const size_t len = strnlen(chunk, n);
    out.append(chunk, len);
    if (len < n) break;
    va += n;
  }
  return out;
}

ObjectContext object_context(Kernel& kernel) {
  return ObjectContext{&kernel.space(), &kernel.types(),
                       [&kernel](std::string_view name) { return kernel.symbol(name); }};
}

std::string Object::type_name() const {
  std::string s = spell(*ctx_->types, type_);
  if (bitfield_bits_ != 0) s += fmt::format(" :{}", bitfield_bits_);
  return s;
}

Result<uint64_t> Object::size() const {
  return ctx_->types->size_of(type_);
}

Result<Object> Object::member(std::string_view path) const {
  if (bitfield_bits_ != 0)
    return make_error(Errc::invalid_argument, fmt::format("'{}' of a bitfield", path));
  // Resolved as a FieldSlot, like every member a feature decodes from a copy.
  NFM_ASSIGN(Field f, ctx_->types->member(type_, path));
  const FieldSlot slot = slot_of(f);
  Object o(*ctx_, address_ + slot.offset, f.type);
  o.bit_shift_ = static_cast<uint8_t>(slot.shift);
  o.bitfield_bits_ = static_cast<uint8_t>(slot.bits);
  return o;
}

Result<Object> Object::deref() const {
  NFM_ASSIGN(TypeRef target, ctx_->types->pointee(type_));
  NFM_ASSIGN(uint64_t p, as_pointer());
  NFM_TRY(check_pointer(p, address_, type_name()));
  return Object(*ctx_, p, target);
}

Result<Object> Object::arrow(std::string_view path) const {
  NFM_ASSIGN(Object m, member(path));
  return m.deref();
}

Result<Object> Object::index(uint64_t i) const {
  const Types& t = *ctx_->types;
  if (t.is(type_, TypeKind::array)) {
    NFM_ASSIGN(ArrayInfo a, t.array(type_));
    // count 0 is a flexible array member: its length is only known at run time.
    if (a.count != 0 && i >= a.count) {
      return make_error(Errc::limit, fmt::format("index {} out of bounds of {}", i, type_name()));
    }
    return Object(*ctx_, address_ + i * a.element_size, a.element);
  }
  if (t.is(type_, TypeKind::pointer)) {
    NFM_ASSIGN(Object base, deref());
    NFM_ASSIGN(uint64_t size, base.size());
    return Object(*ctx_, base.address_ + i * size, base.type_);
  }
  return make_error(Errc::invalid_argument,
                    fmt::format("cannot index {}: not an array or pointer", type_name()));
}

Result<Object> Object::cast(std::string_view type_name) const {
  auto t = ctx_->types->find_struct(type_name);
  if (!t) t = ctx_->types->find_type(type_name);
  if (!t) return t.error();
  return Object(*ctx_, address_, *t);
}

// The bytes the value occupies, read once and decoded by layout.h's loaders, the
// same code that decodes a member out of a copied object.
Result<Object::Bytes> Object::read_bytes() const {
  const Types& t = *ctx_->types;
  uint64_t size = 0;
  if (auto i = t.integer(type_)) {
    size = i->size;
  } else if (t.is(type_, TypeKind::pointer)) {
    size = 8;
  } else {
    return make_error(
        Errc::invalid_argument,
        fmt::format("{} at {:#x} is not an integer or pointer", type_name(), address_));
  }
  if (size == 0 || size > 8)
    return make_error(Errc::unsupported, fmt::format("{}-byte integer {}", size, type_name()));
  Bytes b;
  b.slot = FieldSlot{0, size, bit_shift_, bitfield_bits_, true};
  // A bitfield: exactly the bytes it touches, at most 9 for a 64-bit field.
  b.length = bitfield_bits_ == 0 ? size : (bit_shift_ + bitfield_bits_ + 7) / 8;
  NFM_TRY(ctx_->space->read(address_, b.data, b.length));
  return b;
}

Result<uint64_t> Object::as_unsigned() const {
  NFM_ASSIGN(Bytes b, read_bytes());
  return load_unsigned(b.span(), b.slot);
}

Result<int64_t> Object::as_signed() const {
  NFM_ASSIGN(Bytes b, read_bytes());
  auto i = ctx_->types->integer(type_);
  if (i && i->is_signed) return load_signed(b.span(), b.slot);
  return static_cast<int64_t>(load_unsigned(b.span(), b.slot));
}

Result<bool> Object::as_bool() const {
  NFM_ASSIGN(uint64_t v, as_unsigned());
  return v != 0;
}

Result<uint64_t> Object::as_pointer() const {
  if (!ctx_->types->is(type_, TypeKind::pointer))
    return make_error(Errc::invalid_argument,
                      fmt::format("{} at {:#x} is not a pointer", type_name(), address_));
  return ctx_->space->read_value<uint64_t>(address_);
}

Result<std::string> Object::as_string(size_t max) const {
  const Types& t = *ctx_->types;
  if (t.is(type_, TypeKind::array)) {
    NFM_ASSIGN(ArrayInfo a, t.array(type_));
    if (is_byte(t, a.element)) {
      // A fixed buffer need not be NUL-terminated (comm, sysname): its length bounds it.
      if (a.count != 0) max = std::min<size_t>(max, a.count);
      return read_c_string(*ctx_->space, address_, max);
    }
  } else if (t.is(type_, TypeKind::pointer)) {
    NFM_ASSIGN(TypeRef target, t.pointee(type_));
    if (is_byte(t, target)) {
      NFM_ASSIGN(uint64_t p, as_pointer());
      NFM_TRY(check_pointer(p, address_, type_name()));
      return read_c_string(*ctx_->space, p, max);
    }
  }
  return make_error(
      Errc::invalid_argument,
      fmt::format("{} at {:#x} is not a char array or pointer", type_name(), address_));
}

Result<Object> var(const ObjectContext& ctx, std::string_view symbol, std::string_view type_name) {
  NFM_ASSIGN(uint64_t address, ctx.symbol(symbol));
  if (type_name.empty()) {
    // BTF VARs exist for per-cpu variables (and, with pahole --btf_gen_all, more).
    auto id = ctx.types->find_var(symbol);
    if (!id)
      return make_error(Errc::not_found,
                        fmt::format("no BTF variable '{}': give its type name", symbol));
    return Object(ctx, address, TypeRef{ctx.types->record(*id)->type});
  }
  // struct tags and typedef names are separate namespaces in C: a struct first.
  auto t = ctx.types->find_struct(type_name);
  if (!t) t = ctx.types->find_type(type_name);
  if (!t) return t.error();
  return Object(ctx, address, *t);
}

Result<Object> container_of(const ObjectContext& ctx, uint64_t member_address,
                            std::string_view struct_name, std::string_view member_path) {
  NFM_ASSIGN(Field f, ctx.types->member(struct_name, member_path));
  NFM_ASSIGN(TypeRef t, ctx.types->find_struct(struct_name));
  return Object(ctx, member_address - f.offset, t);
}

namespace detail {

Result<EntryLayout> entry_layout(const Object& head, std::string_view head_type,
                                 std::string_view struct_name, std::string_view member_path,
                                 std::string_view node_type) {
  const Types& t = *head.context().types;
  // Catch a wrong head or member early: walking e.g. an hlist as a list reads garbage.
  if (t.name(t.resolve(head.type())) != head_type) {
    return make_error(Errc::invalid_argument,
                      fmt::format("list head at {:#x} is {}, not struct {}", head.address(),
                                  head.type_name(), head_type));
  }
  NFM_ASSIGN(TypeRef entry, t.find_struct(struct_name));
  NFM_ASSIGN(Field f, t.member(entry, member_path));
  if (t.name(t.resolve(f.type)) != node_type) {
    return make_error(Errc::invalid_argument,
                      fmt::format("{}.{} is {}, not struct {}", struct_name, member_path,
                                  spell(t, f.type), node_type));
  }
  return EntryLayout{f.offset, entry};
}

}  // namespace detail

}  // namespace nfm
