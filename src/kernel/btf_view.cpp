#include "kernel/btf_view.h"

#include <fmt/format.h>
#include <linux/btf.h>

#include <cstring>

namespace nfm {

namespace {

Error bad(std::string what) {
  return make_error(Errc::bad_format, "BTF: " + std::move(what));
}

// Bytes after the common struct btf_type header, or -1 for a kind this reader
// does not know (a newer kernel's: refuse rather than misread what follows).
int64_t extra_bytes(const struct btf_type* t) {
  const uint64_t vlen = btf_vlen(t);
  switch (btf_kind(t)) {
    case BTF_KIND_INT:
      return sizeof(uint32_t);
    case BTF_KIND_PTR:
    case BTF_KIND_FWD:
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_FUNC:
    case BTF_KIND_FLOAT:
    case BTF_KIND_TYPE_TAG:
      return 0;
    case BTF_KIND_ARRAY:
      return sizeof(struct btf_array);
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
      return static_cast<int64_t>(vlen * sizeof(struct btf_member));
    case BTF_KIND_ENUM:
      return static_cast<int64_t>(vlen * sizeof(struct btf_enum));
    case BTF_KIND_ENUM64:
      return static_cast<int64_t>(vlen * sizeof(struct btf_enum64));
    case BTF_KIND_FUNC_PROTO:
      return static_cast<int64_t>(vlen * sizeof(struct btf_param));
    case BTF_KIND_VAR:
      return sizeof(struct btf_var);
    case BTF_KIND_DATASEC:
      return static_cast<int64_t>(vlen * sizeof(struct btf_var_secinfo));
    case BTF_KIND_DECL_TAG:
      return sizeof(struct btf_decl_tag);
    default:
      return -1;
  }
}

}  // namespace

Result<BtfView> BtfView::open(std::span<const uint8_t> bytes, const BtfView* base) {
  struct btf_header h;
  if (bytes.size() < sizeof h) return bad(fmt::format("{} bytes: no header", bytes.size()));
  std::memcpy(&h, bytes.data(), sizeof h);
  // The guest is x86-64: a byte-swapped magic is not a blob of its kernel.
  if (h.magic != BTF_MAGIC) return bad(fmt::format("bad magic {:#06x}", h.magic));
  if (h.version != BTF_VERSION) return bad(fmt::format("version {}", h.version));
  if (h.hdr_len < sizeof h || h.hdr_len > bytes.size())
    return bad(fmt::format("header length {} in a blob of {} bytes", h.hdr_len, bytes.size()));
  const uint64_t data = bytes.size() - h.hdr_len;
  if (uint64_t{h.type_off} + h.type_len > data || uint64_t{h.str_off} + h.str_len > data)
    return bad("a section lies past the end of the blob");
  if (h.type_off % 4 != 0) return bad("the type section is not 4-byte aligned");
  // Strings end with a NUL, so any offset inside the section names a terminated one.
  if (h.str_len == 0 || bytes[h.hdr_len + h.str_off + h.str_len - 1] != 0)
    return bad("the string section does not end with a NUL");

  BtfView v;
  v.bytes_ = bytes;
  v.types_ = bytes.data() + h.hdr_len + h.type_off;
  if (reinterpret_cast<uintptr_t>(v.types_) % alignof(struct btf_type) != 0)
    return bad("the type section is not aligned in memory");
  v.strings_ = {reinterpret_cast<const char*>(bytes.data() + h.hdr_len + h.str_off), h.str_len};
  if (base) {
    v.base_ = base;
    v.start_id_ = base->type_count();
    v.start_str_ = base->start_str_ + static_cast<uint32_t>(base->strings_.size());
  }
  // Every record is at least a header: the count is bounded by the section's size.
  v.offsets_.reserve(h.type_len / sizeof(struct btf_type));
  for (uint64_t at = 0; at < h.type_len;) {
    if (h.type_len - at < sizeof(struct btf_type))
      return bad(fmt::format("type {} is cut short", v.type_count()));
    const auto* t = reinterpret_cast<const struct btf_type*>(v.types_ + at);
    const int64_t extra = extra_bytes(t);
    if (extra < 0)
      return bad(fmt::format("type {} has unknown kind {}", v.type_count(), btf_kind(t)));
    const uint64_t size = sizeof(struct btf_type) + static_cast<uint64_t>(extra);
    if (size > h.type_len - at)
      return bad(fmt::format("type {} runs past the type section", v.type_count()));
    v.offsets_.push_back(static_cast<uint32_t>(at));
    at += size;
  }
  return v;
}

const struct btf_type* BtfView::type(uint32_t id) const {
  if (id < start_id_) return base_ && id != 0 ? base_->type(id) : nullptr;
  const uint32_t own = id - start_id_;
  if (own >= offsets_.size()) return nullptr;
  return reinterpret_cast<const struct btf_type*>(types_ + offsets_[own]);
}

std::string_view BtfView::str(uint32_t offset) const {
  if (offset < start_str_) return base_ ? base_->str(offset) : std::string_view();
  const uint32_t own = offset - start_str_;
  if (own >= strings_.size()) return {};
  return {strings_.data() + own};  // NUL-terminated: open() checked the section's last byte
}

int64_t BtfView::resolve_size(uint32_t id) const {
  // libbpf's bound on chains of typedefs, qualifiers and arrays.
  constexpr int kMaxDepth = 32;
  uint64_t elements = 1;
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    const struct btf_type* t = type(id);
    if (!t) return -1;
    switch (btf_kind(t)) {
      case BTF_KIND_INT:
      case BTF_KIND_STRUCT:
      case BTF_KIND_UNION:
      case BTF_KIND_ENUM:
      case BTF_KIND_ENUM64:
      case BTF_KIND_DATASEC:
      case BTF_KIND_FLOAT: {
        const uint64_t total = elements * t->size;
        if (t->size != 0 && total / t->size != elements) return -1;
        return total > uint64_t{UINT32_MAX} ? -1 : static_cast<int64_t>(total);
      }
      case BTF_KIND_PTR:
        // x86-64 guests only (DESIGN.md): pointers are 8 bytes.
        return elements * 8 > uint64_t{UINT32_MAX} ? -1 : static_cast<int64_t>(elements * 8);
      case BTF_KIND_TYPEDEF:
      case BTF_KIND_VOLATILE:
      case BTF_KIND_CONST:
      case BTF_KIND_RESTRICT:
      case BTF_KIND_VAR:
      case BTF_KIND_DECL_TAG:
      case BTF_KIND_TYPE_TAG:
        id = t->type;
        break;
      case BTF_KIND_ARRAY: {
        const struct btf_array* a = btf_array(t);
        if (a->nelems != 0 && elements > UINT32_MAX / a->nelems) return -1;
        elements *= a->nelems;
        id = a->type;
        break;
      }
      default:
        return -1;
    }
  }
  return -1;
}

}  // namespace nfm
