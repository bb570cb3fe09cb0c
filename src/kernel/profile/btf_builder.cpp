#include "kernel/profile/btf_builder.h"

#include <bpf/btf.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace nfm {

uint32_t BtfBuilder::add(Node n) {
  nodes_.push_back(std::move(n));
  return static_cast<uint32_t>(nodes_.size());
}

uint32_t BtfBuilder::array_index_type() {
  if (index_type_ == 0)
    index_type_ = add({.kind = Kind::int_, .name = "__ARRAY_SIZE_TYPE__", .size = 4});
  return index_type_;
}

namespace {

const char* name_or_null(const std::string& s) {
  return s.empty() ? nullptr : s.c_str();
}

}  // namespace

Result<std::vector<uint8_t>> BtfBuilder::raw() const {
  std::unique_ptr<struct btf, void (*)(struct btf*)> btf(btf__new_empty(), btf__free);
  if (!btf) return make_error(Errc::io, "libbpf could not create an empty BTF");
  struct btf* b = btf.get();
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    const uint32_t want = i + 1;
    int id = -EINVAL;
    switch (n.kind) {
      case Kind::int_:
        id = btf__add_int(b, n.name.c_str(), n.size, n.encoding);
        break;
      case Kind::float_:
        id = btf__add_float(b, n.name.c_str(), n.size);
        break;
      case Kind::pointer:
        id = btf__add_ptr(b, static_cast<int>(n.ref));
        break;
      case Kind::array:
        id = btf__add_array(b, static_cast<int>(index_type_ ? index_type_ : n.ref),
                            static_cast<int>(n.ref), n.count);
        break;
      case Kind::struct_:
      case Kind::union_: {
        id = n.kind == Kind::struct_ ? btf__add_struct(b, name_or_null(n.name), n.size)
                                     : btf__add_union(b, name_or_null(n.name), n.size);
        if (id < 0) break;
        for (const Member& m : n.members) {
          int err = btf__add_field(b, name_or_null(m.name), static_cast<int>(m.type), m.bit_offset,
                                   m.bitfield_bits);
          if (err < 0)
            return make_error(Errc::bad_format,
                              fmt::format("type {} ('{}'): member '{}' at bit {} (width {}) "
                                          "rejected by libbpf: {}",
                                          want, n.name, m.name, m.bit_offset, m.bitfield_bits,
                                          std::strerror(-err)));
        }
        break;
      }
      case Kind::enum_: {
        bool wide = n.size > 4;
        for (const auto& [name, value] : n.enumerators)
          wide = wide || value > int64_t{UINT32_MAX} || value < int64_t{INT32_MIN};
        const uint32_t size = n.size ? n.size : 4;
        id = wide ? btf__add_enum64(b, name_or_null(n.name), size < 8 ? 8 : size, n.is_signed)
                  : btf__add_enum(b, name_or_null(n.name), size);
        if (id < 0) break;
        for (const auto& [name, value] : n.enumerators) {
          int err = wide ? btf__add_enum64_value(b, name.c_str(), static_cast<uint64_t>(value))
                         : btf__add_enum_value(b, name.c_str(), value);
          if (err < 0)
            return make_error(Errc::bad_format, fmt::format("enumerator {} = {} rejected: {}", name,
                                                            value, std::strerror(-err)));
        }
        // libbpf's convention (and Types'): kflag marks a signed 32-bit enum.
        if (!wide && n.is_signed) {
          auto* t = const_cast<struct btf_type*>(btf__type_by_id(b, id));
          t->info |= 1u << 31;
        }
        break;
      }
      case Kind::fwd_struct:
      case Kind::fwd_union:
        id = btf__add_fwd(b, n.name.empty() ? "anon" : n.name.c_str(),
                          n.kind == Kind::fwd_union ? BTF_FWD_UNION : BTF_FWD_STRUCT);
        break;
      case Kind::typedef_:
        id = btf__add_typedef(b, n.name.empty() ? "anon" : n.name.c_str(), static_cast<int>(n.ref));
        break;
      case Kind::const_:
        id = btf__add_const(b, static_cast<int>(n.ref));
        break;
      case Kind::volatile_:
        id = btf__add_volatile(b, static_cast<int>(n.ref));
        break;
      case Kind::restrict_:
        id = btf__add_restrict(b, static_cast<int>(n.ref));
        break;
      case Kind::func_proto:
        id = btf__add_func_proto(b, static_cast<int>(n.ref));
        break;
    }
    if (id < 0)
      return make_error(Errc::bad_format,
                        fmt::format("type {} ('{}', size {}) rejected by libbpf: {}", want, n.name,
                                    n.size, std::strerror(-id)));
    if (static_cast<uint32_t>(id) != want)
      return make_error(Errc::bad_format, fmt::format("libbpf numbered type {} as {}", want, id));
  }
  uint32_t size = 0;
  const void* data = btf__raw_data(b, &size);
  if (data == nullptr) return make_error(Errc::io, "libbpf could not serialize the BTF");
  const auto* p = static_cast<const uint8_t*>(data);
  return std::vector<uint8_t>(p, p + size);
}

Result<Types> BtfBuilder::build() const {
  NFM_ASSIGN(std::vector<uint8_t> bytes, raw());
  return Types::from_btf_bytes(bytes);
}

}  // namespace nfm
