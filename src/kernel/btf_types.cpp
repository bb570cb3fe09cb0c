#include "kernel/btf_types.h"

#include <bpf/btf.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "kernel/btf_view.h"

namespace nfm {

struct Types::Impl {
  BtfView view;                       // the types, read in place
  std::shared_ptr<const void> owner;  // keeps the bytes `view` reads alive
  std::shared_ptr<const Impl> base;   // split BTF: its base

  // libbpf's parse of the same bytes, made on first use: splitting a module's BTF
  // over this one and the ISF export need it; lookups never do.
  mutable std::once_flag libbpf_once;
  mutable struct btf* libbpf = nullptr;

  TypeIndex names;  // spans into the vectors below, or into a cached profile
  std::vector<TypeIndex::Named> own_composites, own_named;
  std::vector<TypeIndex::Enumerator> own_enumerators;

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, Result<Field>> member_cache;
  mutable std::unordered_map<std::string, Result<TypeRef>> var_cache;

  ~Impl() { btf__free(libbpf); }

  void index();
  struct btf* libbpf_btf() const;
  const struct btf_type* type(uint32_t id) const { return view.type(id); }
  std::string_view str(uint32_t off) const { return view.str(off); }
  // The first entry named `key`, or nullptr.
  template <typename Entry>
  const Entry* find(std::span<const Entry> entries, std::string_view key) const {
    auto it = std::lower_bound(
        entries.begin(), entries.end(), key,
        [&](const Entry& e, std::string_view k) { return str(e.name_offset) < k; });
    return it != entries.end() && str(it->name_offset) == key ? &*it : nullptr;
  }
  // A type id from the index, if the BTF agrees (a stored index is not trusted blindly).
  std::optional<uint32_t> checked(const TypeIndex::Named* e, std::string_view key,
                                  bool composite) const {
    if (!e) return std::nullopt;
    const struct btf_type* t = type(e->id);
    if (!t || str(t->name_off) != key) return std::nullopt;
    if (composite != (btf_is_struct(t) || btf_is_union(t))) return std::nullopt;
    return e->id;
  }
};

namespace {

int64_t enum_entry_value(const struct btf_type* t, unsigned i) {
  if (btf_is_enum64(t)) {
    uint64_t v = btf_enum64_value(btf_enum64(t) + i);
    return static_cast<int64_t>(v);
  }
  // libbpf's convention: kflag marks a signed enum (pahole >= 1.24); otherwise u32.
  int32_t v = btf_enum(t)[i].val;
  return btf_kflag(t) ? int64_t{v} : int64_t{static_cast<uint32_t>(v)};
}

bool is_composite(const struct btf_type* t) {
  return btf_is_struct(t) || btf_is_union(t);
}

Error not_found(std::string msg) {
  return make_error(Errc::not_found, std::move(msg));
}

}  // namespace

void Types::Impl::index() {
  // A split blob's index names the base's types too, as lookups there must find them.
  const uint32_t n = view.type_count();
  for (uint32_t id = 1; id < n; ++id) {
    const struct btf_type* t = type(id);
    if (btf_is_enum(t) || btf_is_enum64(t)) {
      for (unsigned i = 0; i < btf_vlen(t); ++i) {
        uint32_t name_off = btf_is_enum64(t) ? btf_enum64(t)[i].name_off : btf_enum(t)[i].name_off;
        own_enumerators.push_back({name_off, 0, enum_entry_value(t, i)});
      }
    }
    if (str(t->name_off).empty()) continue;
    if (is_composite(t)) {
      own_composites.push_back({t->name_off, id});
    } else if (btf_is_typedef(t) || btf_is_int(t) || btf_is_enum(t) || btf_is_enum64(t) ||
               btf_is_float(t)) {
      own_named.push_back({t->name_off, id});
    }
  }
  // Stable: among equal names the first definition stays first, and find() takes it.
  auto by_name = [&](const auto& a, const auto& b) {
    return str(a.name_offset) < str(b.name_offset);
  };
  std::stable_sort(own_composites.begin(), own_composites.end(), by_name);
  std::stable_sort(own_named.begin(), own_named.end(), by_name);
  std::stable_sort(own_enumerators.begin(), own_enumerators.end(), by_name);
  names = {own_composites, own_named, own_enumerators, nullptr};
}

const char* type_kind_name(TypeKind k) {
  static constexpr const char* kNames[] = {
      "void", "int",     "pointer",  "array",    "struct",   "union",  "enum",
      "fwd",  "typedef", "volatile", "const",    "restrict", "func",   "func_proto",
      "var",  "datasec", "float",    "decl_tag", "type_tag", "enum64", "unknown"};
  return kNames[static_cast<int>(k)];
}

namespace {

// A copy of `bytes` that Types keeps, aligned for the records read in place.
std::pair<std::span<const uint8_t>, std::shared_ptr<const void>> keep_copy(
    std::span<const uint8_t> bytes) {
  auto copy = std::make_shared<std::vector<uint64_t>>((bytes.size() + 7) / 8);
  if (!bytes.empty()) std::memcpy(copy->data(), bytes.data(), bytes.size());
  return {std::span(reinterpret_cast<const uint8_t*>(copy->data()), bytes.size()), std::move(copy)};
}

}  // namespace

struct btf* Types::Impl::libbpf_btf() const {
  std::call_once(libbpf_once, [&] {
    if (base) {
      // A split blob is parsed with its base when opened (from_split_btf_bytes).
      return;
    }
    const auto bytes = view.bytes();
    libbpf = btf__new(bytes.data(), static_cast<uint32_t>(bytes.size()));
  });
  return libbpf;
}

Result<Types> Types::from_btf_bytes(std::span<const uint8_t> bytes, const TypeIndex* index) {
  auto impl = std::make_shared<Impl>();
  std::tie(bytes, impl->owner) = keep_copy(bytes);
  // libbpf checks what it parses (ids, names, sizes) more deeply than the view's
  // bounds: bytes from a guest or a file go through it once. Its parse is a second
  // copy of the blob, so it is let go (libbpf_btf() makes another if one is asked for).
  struct btf* parsed = btf__new(bytes.data(), static_cast<uint32_t>(bytes.size()));
  if (parsed == nullptr) {
    return make_error(Errc::bad_format, fmt::format("libbpf rejected the BTF blob ({} bytes): {}",
                                                    bytes.size(), std::strerror(errno)));
  }
  btf__free(parsed);
  NFM_ASSIGN(impl->view, BtfView::open(bytes));
  if (index)
    impl->names = *index;
  else
    impl->index();
  return Types(std::move(impl));
}

Result<Types> Types::from_checked_btf(std::span<const uint8_t> bytes,
                                      std::shared_ptr<const void> owner, const TypeIndex& index) {
  auto impl = std::make_shared<Impl>();
  impl->owner = std::move(owner);
  NFM_ASSIGN(impl->view, BtfView::open(bytes));
  impl->names = index;
  return Types(std::move(impl));
}

TypeIndex Types::index() const {
  TypeIndex out = impl_->names;
  out.owner = impl_;
  return out;
}

Result<Types> Types::from_split_btf_bytes(std::span<const uint8_t> bytes, const Types& base) {
  struct btf* base_btf = base.impl_->libbpf_btf();
  if (base_btf == nullptr)
    return make_error(Errc::bad_format, "libbpf rejected the base BTF of a split blob");
  auto impl = std::make_shared<Impl>();
  impl->base = base.impl_;
  std::tie(bytes, impl->owner) = keep_copy(bytes);
  // libbpf 1.1 exports no btf__new_split(); btf__parse_raw_split() reads a
  // path, so the bytes go through a memfd.
  const int fd = memfd_create("nfm-split-btf", MFD_CLOEXEC);
  if (fd < 0) return make_error(Errc::io, fmt::format("memfd_create: {}", std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      close(fd);
      return make_error(Errc::io,
                        fmt::format("writing split BTF to a memfd: {}", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  const std::string path = fmt::format("/proc/self/fd/{}", fd);
  struct btf* parsed = btf__parse_raw_split(path.c_str(), base_btf);
  const int err = errno;
  close(fd);
  if (parsed == nullptr) {
    return make_error(Errc::bad_format,
                      fmt::format("libbpf rejected the split BTF blob ({} bytes): {}", bytes.size(),
                                  std::strerror(err)));
  }
  std::call_once(impl->libbpf_once, [&] { impl->libbpf = parsed; });
  NFM_ASSIGN(impl->view, BtfView::open(bytes, &base.impl_->view));
  impl->index();
  return Types(std::move(impl));
}

uint32_t Types::type_count() const {
  return impl_->view.type_count();
}
const struct btf_type* Types::record(TypeRef t) const {
  return impl_->type(t.id);
}
std::string_view Types::string_at(uint32_t offset) const {
  return impl_->str(offset);
}
std::span<const uint8_t> Types::bytes() const {
  return impl_->view.bytes();
}
const struct btf* Types::libbpf() const {
  return impl_->libbpf_btf();
}

Result<TypeRef> Types::find_var(std::string_view name) const {
  std::string key(name);
  {
    std::lock_guard lock(impl_->cache_mu);
    if (auto it = impl_->var_cache.find(key); it != impl_->var_cache.end()) return it->second;
  }
  // VARs are not indexed (few names are asked for, a check's each crawl): one pass over
  // the records per name, as btf__find_by_name_kind() makes, then the answer is kept.
  Result<TypeRef> found = not_found(fmt::format("no BTF variable '{}'", name));
  const uint32_t n = type_count();
  for (uint32_t id = 1; id < n; ++id) {
    const struct btf_type* t = impl_->type(id);
    if (btf_is_var(t) && impl_->str(t->name_off) == name) {
      found = TypeRef{id};
      break;
    }
  }
  std::lock_guard lock(impl_->cache_mu);
  return impl_->var_cache.emplace(std::move(key), std::move(found)).first->second;
}

Result<TypeRef> Types::find_struct(std::string_view name) const {
  if (auto id = impl_->checked(impl_->find(impl_->names.composites, name), name, true))
    return TypeRef{*id};
  return not_found(fmt::format("no struct or union named '{}' in BTF", name));
}

Result<TypeRef> Types::find_type(std::string_view name) const {
  if (auto id = impl_->checked(impl_->find(impl_->names.named, name), name, false))
    return TypeRef{*id};
  if (auto id = impl_->checked(impl_->find(impl_->names.composites, name), name, true))
    return TypeRef{*id};
  return not_found(fmt::format("no type named '{}' in BTF", name));
}

TypeKind Types::kind(TypeRef t) const {
  if (t.id == 0) return TypeKind::void_;
  const struct btf_type* bt = impl_->type(t.id);
  if (bt == nullptr) return TypeKind::unknown;
  switch (btf_kind(bt)) {
    case BTF_KIND_INT:
      return TypeKind::int_;
    case BTF_KIND_PTR:
      return TypeKind::pointer;
    case BTF_KIND_ARRAY:
      return TypeKind::array;
    case BTF_KIND_STRUCT:
      return TypeKind::struct_;
    case BTF_KIND_UNION:
      return TypeKind::union_;
    case BTF_KIND_ENUM:
      return TypeKind::enum_;
    case BTF_KIND_FWD:
      return TypeKind::fwd;
    case BTF_KIND_TYPEDEF:
      return TypeKind::typedef_;
    case BTF_KIND_VOLATILE:
      return TypeKind::volatile_;
    case BTF_KIND_CONST:
      return TypeKind::const_;
    case BTF_KIND_RESTRICT:
      return TypeKind::restrict_;
    case BTF_KIND_FUNC:
      return TypeKind::func;
    case BTF_KIND_FUNC_PROTO:
      return TypeKind::func_proto;
    case BTF_KIND_VAR:
      return TypeKind::var;
    case BTF_KIND_DATASEC:
      return TypeKind::datasec;
    case BTF_KIND_FLOAT:
      return TypeKind::float_;
    case BTF_KIND_DECL_TAG:
      return TypeKind::decl_tag;
    case BTF_KIND_TYPE_TAG:
      return TypeKind::type_tag;
    case BTF_KIND_ENUM64:
      return TypeKind::enum64;
    default:
      return TypeKind::unknown;
  }
}

TypeRef Types::resolve(TypeRef t) const {
  for (int guard = 0; guard < 64 && t.id != 0; ++guard) {
    const struct btf_type* bt = impl_->type(t.id);
    if (bt == nullptr) return t;
    if (!btf_is_typedef(bt) && !btf_is_mod(bt) && !btf_is_type_tag(bt)) return t;
    t.id = bt->type;
  }
  return t;
}

std::string_view Types::name(TypeRef t) const {
  if (t.id == 0) return "void";
  const struct btf_type* bt = impl_->type(t.id);
  return bt ? impl_->str(bt->name_off) : std::string_view();
}

Result<uint64_t> Types::size_of(TypeRef t) const {
  const int64_t s = impl_->view.resolve_size(t.id);
  if (s < 0) {
    return make_error(Errc::invalid_argument,
                      fmt::format("type {} ({}) has no size", t.id, type_kind_name(kind(t))));
  }
  return static_cast<uint64_t>(s);
}

Result<uint64_t> Types::size_of(std::string_view struct_name) const {
  NFM_ASSIGN(TypeRef t, find_struct(struct_name));
  return size_of(t);
}

Result<TypeRef> Types::pointee(TypeRef t) const {
  TypeRef r = resolve(t);
  const struct btf_type* bt = impl_->type(r.id);
  if (r.id == 0 || bt == nullptr || !btf_is_ptr(bt)) {
    return make_error(Errc::invalid_argument, fmt::format("type {} is not a pointer", t.id));
  }
  return TypeRef{bt->type};
}

Result<ArrayInfo> Types::array(TypeRef t) const {
  TypeRef r = resolve(t);
  const struct btf_type* bt = impl_->type(r.id);
  if (r.id == 0 || bt == nullptr || !btf_is_array(bt)) {
    return make_error(Errc::invalid_argument, fmt::format("type {} is not an array", t.id));
  }
  const struct btf_array* a = btf_array(bt);
  ArrayInfo info{TypeRef{a->type}, a->nelems, 0};
  NFM_ASSIGN(info.element_size, size_of(info.element));
  return info;
}

Result<IntInfo> Types::integer(TypeRef t) const {
  TypeRef r = resolve(t);
  const struct btf_type* bt = impl_->type(r.id);
  if (r.id != 0 && bt != nullptr && btf_is_int(bt)) {
    uint8_t enc = btf_int_encoding(bt);
    return IntInfo{bt->size, (enc & BTF_INT_SIGNED) != 0, (enc & BTF_INT_CHAR) != 0,
                   (enc & BTF_INT_BOOL) != 0};
  }
  if (r.id != 0 && bt != nullptr && (btf_is_enum(bt) || btf_is_enum64(bt))) {
    return IntInfo{bt->size, btf_kflag(bt), false, false};
  }
  return make_error(Errc::invalid_argument, fmt::format("type {} is not an integer", t.id));
}

Result<int64_t> Types::enum_value(std::string_view enumerator) const {
  if (const auto* e = impl_->find(impl_->names.enumerators, enumerator)) return e->value;
  return not_found(fmt::format("no enumerator '{}' in BTF", enumerator));
}

Result<int64_t> Types::enum_value(std::string_view enum_name, std::string_view enumerator) const {
  NFM_ASSIGN(TypeRef t, find_type(enum_name));
  const struct btf_type* bt = impl_->type(resolve(t).id);
  if (bt == nullptr || !(btf_is_enum(bt) || btf_is_enum64(bt))) {
    return make_error(Errc::invalid_argument, fmt::format("'{}' is not an enum", enum_name));
  }
  for (unsigned i = 0; i < btf_vlen(bt); ++i) {
    uint32_t off = btf_is_enum64(bt) ? btf_enum64(bt)[i].name_off : btf_enum(bt)[i].name_off;
    if (impl_->str(off) == enumerator) return enum_entry_value(bt, i);
  }
  return not_found(fmt::format("enum {} has no enumerator '{}'", enum_name, enumerator));
}

namespace {

// Looks for member `name` of composite `id`, descending into anonymous struct and
// union members (whose fields C lets you name directly).
// `visits` bounds the whole search: anonymous members nest at most 32 deep, but a
// doctored BTF whose anonymous members each hold several more of the same type
// branches exponentially (a hang found by the dwarf fuzzer). A real kernel's largest
// struct has a few hundred members.
constexpr size_t kMaxMemberVisits = size_t{1} << 16;

bool find_direct_member(const Types::Impl& impl, const Types& types, uint32_t id,
                        std::string_view name, uint64_t base_bits, Field* out, int depth,
                        size_t& visits) {
  const struct btf_type* t = impl.type(id);
  const struct btf_member* m = btf_members(t);
  for (unsigned i = 0; i < btf_vlen(t); ++i) {
    if (++visits > kMaxMemberVisits) return false;
    uint64_t bits = base_bits + btf_member_bit_offset(t, i);
    std::string_view mn = impl.str(m[i].name_off);
    if (!mn.empty()) {
      if (mn != name) continue;
      out->bit_offset = bits;
      out->offset = bits / 8;
      out->bitfield_bits = btf_member_bitfield_size(t, i);
      out->type = TypeRef{m[i].type};
      out->size = types.size_of(out->type).value_or(0);
      return true;
    }
    TypeRef inner = types.resolve(TypeRef{m[i].type});
    const struct btf_type* it = impl.type(inner.id);
    if (depth < 32 && it != nullptr && is_composite(it) &&
        find_direct_member(impl, types, inner.id, name, bits, out, depth + 1, visits)) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<Field> Types::member(TypeRef outer, std::string_view path) const {
  std::string key(reinterpret_cast<const char*>(&outer.id), sizeof outer.id);
  key.append(path);
  {
    std::lock_guard lock(impl_->cache_mu);
    if (auto it = impl_->member_cache.find(key); it != impl_->member_cache.end()) return it->second;
  }

  auto compute = [&]() -> Result<Field> {
    Field f;
    f.type = outer;
    std::string_view rest = path;
    std::string outer_name = fmt::format("{}", name(resolve(outer)));
    while (true) {
      size_t dot = rest.find('.');
      std::string_view comp = rest.substr(0, dot);
      std::string_view member_name = comp.substr(0, comp.find('['));
      TypeRef cur = resolve(f.type);
      const struct btf_type* ct = impl_->type(cur.id);
      if (cur.id == 0 || ct == nullptr || !is_composite(ct)) {
        return make_error(Errc::invalid_argument,
                          fmt::format("'{}' in '{}': {} is a {}, not an embedded struct/union",
                                      member_name, path, outer_name, type_kind_name(kind(cur))));
      }
      Field m;
      size_t visits = 0;
      if (member_name.empty() ||
          !find_direct_member(*impl_, *this, cur.id, member_name, 0, &m, 0, visits)) {
        return not_found(fmt::format("{} {} has no member '{}'",
                                     btf_is_union(ct) ? "union" : "struct", outer_name,
                                     member_name));
      }
      f.bit_offset += m.bit_offset;
      f.offset = f.bit_offset / 8;
      f.bitfield_bits = m.bitfield_bits;
      f.type = m.type;
      f.size = m.size;
      // Array subscripts: "count[2]", "a[1][0]".
      for (size_t pos = comp.find('['); pos != std::string_view::npos;
           pos = comp.find('[', pos + 1)) {
        size_t close = comp.find(']', pos);
        uint64_t idx = 0;
        auto [p, ec] = std::from_chars(comp.data() + pos + 1, comp.data() + close, idx);
        if (close == std::string_view::npos || ec != std::errc() || p != comp.data() + close) {
          return make_error(Errc::invalid_argument, fmt::format("bad subscript in '{}'", path));
        }
        NFM_ASSIGN(ArrayInfo a, array(f.type));
        if (idx >= a.count && a.count != 0) {
          return make_error(Errc::limit, fmt::format("index {} out of bounds ({} elements) in '{}'",
                                                     idx, a.count, path));
        }
        f.bit_offset += idx * a.element_size * 8;
        f.offset = f.bit_offset / 8;
        f.type = a.element;
        f.size = a.element_size;
      }
      if (dot == std::string_view::npos) return f;
      rest = rest.substr(dot + 1);
      outer_name = std::string(member_name);
    }
  };

  Result<Field> r = compute();
  std::lock_guard lock(impl_->cache_mu);
  impl_->member_cache.emplace(std::move(key), r);
  return r;
}

Result<Field> Types::member(std::string_view struct_name, std::string_view path) const {
  NFM_ASSIGN(TypeRef t, find_struct(struct_name));
  return member(t, path);
}

bool Types::has_member(TypeRef outer, std::string_view path) const {
  return member(outer, path).ok();
}

bool Types::has_member(std::string_view struct_name, std::string_view path) const {
  auto t = find_struct(struct_name);
  return t && has_member(*t, path);
}

}  // namespace nfm
