#include "kernel/profile/isf.h"

#include <bpf/btf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <lzma.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "kernel/profile/btf_builder.h"
#include "kernel/profile/vmlinuz.h"
#include "memory/mapped_file.h"

namespace nfm {

namespace {

using json = nlohmann::json;
using Kind = BtfBuilder::Kind;

Error isf_error(const std::string& what) {
  return make_error(Errc::bad_format, "ISF: " + what);
}

// ---- Base64 (linux_banner's constant_data).

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kB64[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kB64[(acc << (6 - bits)) & 63]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

std::string base64_decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = std::strchr(kB64, c);
    if (c == '=' || c == '\0' || p == nullptr) continue;
    acc = (acc << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// ---- Reading.

class IsfToBtf {
 public:
  explicit IsfToBtf(const json& doc) : doc_(doc) {}

  Result<BtfBuilder> run() {
    const json* base = section("base_types");
    const json* user = section("user_types");
    const json* enums = section("enums");
    if (!base || !user) return isf_error("no base_types or user_types: not a symbol table");
    for (const auto& [name, t] : base->items()) {
      if (!t.is_object()) return isf_error("base type '" + name + "' is not an object");
      const std::string kind = t.value("kind", "int");
      if (kind == "void" || name == "pointer") continue;
      const uint32_t size = t.value("size", 0u);
      BtfBuilder::Node n{
          .kind = kind == "float" ? Kind::float_ : Kind::int_, .name = name, .size = size};
      if (kind == "bool")
        n.encoding = BTF_INT_BOOL;
      else if (t.value("signed", false))
        n.encoding = BTF_INT_SIGNED;
      if (n.kind == Kind::int_ && size != 1 && size != 2 && size != 4 && size != 8 && size != 16)
        return isf_error(fmt::format("base type '{}' has size {}", name, size));
      base_[name] = b_.add(std::move(n));
    }
    if (enums) {
      for (const auto& [name, e] : enums->items()) {
        if (!e.is_object()) return isf_error("enum '" + name + "' is not an object");
        BtfBuilder::Node n{.kind = Kind::enum_, .name = name, .size = e.value("size", 4u)};
        const std::string b = e.value("base", "int");
        if (auto it = base_.find(b); it != base_.end())
          n.is_signed = b_.node(it->second).encoding == BTF_INT_SIGNED;
        if (const auto c = e.find("constants"); c != e.end() && c->is_object())
          for (const auto& [k, v] : c->items()) {
            if (!v.is_number_integer()) return isf_error("enumerator '" + k + "' is not a number");
            n.enumerators.emplace_back(k, v.get<int64_t>());
          }
        if (name.rfind("unnamed_", 0) == 0) n.name.clear();
        enums_[name] = b_.add(std::move(n));
      }
    }
    // Reserve every composite first: fields refer to each other in any order.
    for (const auto& [name, t] : user->items()) {
      if (!t.is_object()) return isf_error("user type '" + name + "' is not an object");
      const std::string kind = t.value("kind", "struct");
      BtfBuilder::Node n{.kind = kind == "union" ? Kind::union_ : Kind::struct_,
                         .name = name,
                         .size = t.value("size", 0u)};
      if (name.rfind("unnamed_", 0) == 0) n.name.clear();
      user_[name] = b_.add(std::move(n));
    }
    for (const auto& [name, t] : user->items()) {
      const auto fields = t.find("fields");
      if (fields == t.end() || !fields->is_object()) continue;
      std::vector<BtfBuilder::Member> members;
      for (const auto& [fname, f] : fields->items()) {
        if (!f.is_object() || !f.contains("type"))
          return isf_error(fmt::format("{}.{}: field without a type", name, fname));
        BtfBuilder::Member m;
        m.name = f.value("anonymous", false) ? std::string() : fname;
        const uint64_t offset = f.value("offset", uint64_t{0});
        const json& type = f.at("type");
        uint64_t bits = offset * 8;
        if (type.is_object() && type.value("kind", "") == "bitfield") {
          bits += type.value("bit_position", 0u);
          m.bitfield_bits = type.value("bit_length", 0u);
          NFM_ASSIGN(m.type, descriptor(type.contains("type") ? type.at("type") : json()));
        } else {
          NFM_ASSIGN(m.type, descriptor(type));
        }
        if (bits > 0xffffffffu)
          return isf_error(fmt::format("{}.{}: offset too large", name, fname));
        m.bit_offset = static_cast<uint32_t>(bits);
        members.push_back(std::move(m));
      }
      // BTF lists members in layout order; JSON objects are unordered.
      std::stable_sort(members.begin(), members.end(),
                       [](const auto& a, const auto& b) { return a.bit_offset < b.bit_offset; });
      b_.node(user_.at(name)).members = std::move(members);
    }
    return std::move(b_);
  }

 private:
  const json* section(const char* key) const {
    auto it = doc_.find(key);
    return it != doc_.end() && it->is_object() ? &*it : nullptr;
  }

  Result<uint32_t> named(std::unordered_map<std::string, uint32_t>& map, const std::string& name,
                         Kind fwd_kind) {
    if (auto it = map.find(name); it != map.end()) return it->second;
    // Referenced but not described: an opaque forward declaration.
    const uint32_t id = b_.add({.kind = fwd_kind, .name = name});
    map[name] = id;
    return id;
  }

  Result<uint32_t> descriptor(const json& d, int depth = 0) {
    if (!d.is_object() || depth > 64) return isf_error("malformed type descriptor " + d.dump());
    const std::string kind = d.value("kind", "");
    const std::string name = d.value("name", "");
    if (kind == "base") {
      if (name == "void") return 0u;
      auto it = base_.find(name);
      if (it == base_.end()) return isf_error("unknown base type '" + name + "'");
      return it->second;
    }
    if (kind == "struct" || kind == "class") return named(user_, name, Kind::fwd_struct);
    if (kind == "union") return named(user_, name, Kind::fwd_union);
    if (kind == "enum") {
      if (auto it = enums_.find(name); it != enums_.end()) return it->second;
      return base_.count("int") ? base_["int"] : 0u;
    }
    if (kind == "function") {
      if (func_ == 0) func_ = b_.add({.kind = Kind::func_proto});
      return func_;
    }
    if (kind == "pointer") {
      const std::string key = d.contains("subtype") ? d.at("subtype").dump() : "";
      if (auto it = pointers_.find(key); it != pointers_.end()) return it->second;
      uint32_t target = 0;
      if (d.contains("subtype")) {
        NFM_ASSIGN(target, descriptor(d.at("subtype"), depth + 1));
      }
      const uint32_t id = b_.add({.kind = Kind::pointer, .ref = target});
      pointers_[key] = id;
      return id;
    }
    if (kind == "array") {
      if (!d.contains("subtype")) return isf_error("array without a subtype");
      NFM_ASSIGN(uint32_t element, descriptor(d.at("subtype"), depth + 1));
      b_.array_index_type();
      return b_.add({.kind = Kind::array, .ref = element, .count = d.value("count", 0u)});
    }
    if (kind == "bitfield" && d.contains("type")) return descriptor(d.at("type"), depth + 1);
    return isf_error("unknown type kind '" + kind + "'");
  }

  const json& doc_;
  BtfBuilder b_;
  std::unordered_map<std::string, uint32_t> base_, user_, enums_, pointers_;
  uint32_t func_ = 0;
};

Result<std::vector<uint8_t>> xz_compress(std::string_view text) {
  lzma_stream s = LZMA_STREAM_INIT;
  if (lzma_easy_encoder(&s, 2, LZMA_CHECK_CRC64) != LZMA_OK)
    return make_error(Errc::io, "xz encoder init failed");
  std::vector<uint8_t> out(text.size() / 4 + 4096);
  s.next_in = reinterpret_cast<const uint8_t*>(text.data());
  s.avail_in = text.size();
  s.next_out = out.data();
  s.avail_out = out.size();
  while (true) {
    lzma_ret r = lzma_code(&s, LZMA_FINISH);
    if (r == LZMA_STREAM_END) break;
    if (r != LZMA_OK) {
      lzma_end(&s);
      return make_error(Errc::io, "xz compression failed");
    }
    if (s.avail_out == 0) {
      const size_t used = out.size();
      out.resize(used * 2);
      s.next_out = out.data() + used;
      s.avail_out = out.size() - used;
    }
  }
  out.resize(s.total_out);
  lzma_end(&s);
  return out;
}

// ---- Writing.

class BtfToIsf {
 public:
  explicit BtfToIsf(const Types& types) : t_(types) {}

  json run() {
    json base = json::object(), user = json::object(), enums = json::object();
    base["void"] = {{"kind", "void"}, {"size", 0}, {"signed", false}, {"endian", "little"}};
    base["pointer"] = {{"kind", "int"}, {"size", 8}, {"signed", false}, {"endian", "little"}};
    const uint32_t n = t_.type_count();
    // Anonymous composites reached through a typedef take its name (nodemask_t).
    for (uint32_t id = 1; id < n; ++id) {
      const struct btf_type* bt = t_.record(TypeRef{id});
      if (!btf_is_typedef(bt)) continue;
      const struct btf_type* target = t_.record(TypeRef{bt->type});
      if (target &&
          (btf_is_struct(target) || btf_is_union(target) || btf_is_enum(target) ||
           btf_is_enum64(target)) &&
          target->name_off == 0 && !names_.count(bt->type))
        names_[bt->type] = str(bt->name_off);
    }
    for (uint32_t id = 1; id < n; ++id) {
      const struct btf_type* bt = t_.record(TypeRef{id});
      if (btf_is_int(bt) || btf_is_float(bt)) {
        const std::string name = str(bt->name_off);
        if (base.contains(name)) continue;
        const uint8_t enc = btf_is_int(bt) ? btf_int_encoding(bt) : 0;
        base[name] = {{"kind", btf_is_float(bt)       ? "float"
                               : (enc & BTF_INT_BOOL) ? "bool"
                               : (enc & BTF_INT_CHAR) ? "char"
                                                      : "int"},
                      {"size", bt->size},
                      {"signed", (enc & BTF_INT_SIGNED) != 0},
                      {"endian", "little"}};
      } else if (btf_is_enum(bt) || btf_is_enum64(bt)) {
        const std::string name = name_of(id);
        if (enums.contains(name)) continue;
        json constants = json::object();
        for (unsigned i = 0; i < btf_vlen(bt); ++i) {
          if (btf_is_enum64(bt)) {
            const auto* e = btf_enum64(bt) + i;
            const uint64_t v = btf_enum64_value(e);
            constants[str(e->name_off)] = btf_kflag(bt) ? json(static_cast<int64_t>(v)) : json(v);
          } else {
            const auto* e = btf_enum(bt) + i;
            constants[str(e->name_off)] = btf_kflag(bt)
                                              ? json(int64_t{e->val})
                                              : json(uint64_t{static_cast<uint32_t>(e->val)});
          }
        }
        enums[name] = {
            {"size", bt->size},
            {"base", btf_kflag(bt) ? (bt->size == 8 ? "long" : "int")
                                   : (bt->size == 8 ? "long unsigned int" : "unsigned int")},
            {"constants", std::move(constants)}};
      } else if (btf_is_struct(bt) || btf_is_union(bt)) {
        const std::string name = name_of(id);
        if (user.contains(name)) continue;  // first definition wins, as Types reads it
        json fields = json::object();
        const struct btf_member* m = btf_members(bt);
        for (unsigned i = 0; i < btf_vlen(bt); ++i) {
          const uint32_t bit = btf_member_bit_offset(bt, i);
          const uint32_t width = btf_member_bitfield_size(bt, i);
          std::string fname = str(m[i].name_off);
          json field = json::object();
          if (fname.empty()) {
            fname = fmt::format("unnamed_field_{:x}", bit);
            field["anonymous"] = true;
          }
          if (width) {
            // Volatility: the storage unit's byte offset, and bits within it.
            const int64_t unit_bytes = std::max<int64_t>(
                1, static_cast<int64_t>(t_.size_of(TypeRef{m[i].type}).value_or(0)));
            const uint64_t unit = bit / (unit_bytes * 8) * unit_bytes;
            field["offset"] = unit;
            field["type"] = {{"kind", "bitfield"},
                             {"bit_position", bit - unit * 8},
                             {"bit_length", width},
                             {"type", descriptor(m[i].type)}};
          } else {
            field["offset"] = bit / 8;
            field["type"] = descriptor(m[i].type);
          }
          fields[fname] = std::move(field);
        }
        user[name] = {{"kind", btf_is_union(bt) ? "union" : "struct"},
                      {"size", bt->size},
                      {"fields", std::move(fields)}};
      }
    }
    return {{"base_types", std::move(base)},
            {"user_types", std::move(user)},
            {"enums", std::move(enums)}};
  }

 private:
  std::string str(uint32_t off) const { return std::string(t_.string_at(off)); }
  std::string name_of(uint32_t id) {
    if (auto it = names_.find(id); it != names_.end()) return it->second;
    const struct btf_type* bt = t_.record(TypeRef{id});
    std::string n = str(bt->name_off);
    if (n.empty())
      n = fmt::format("unnamed_{}_{}",
                      btf_is_union(bt)    ? "union"
                      : btf_is_struct(bt) ? "struct"
                                          : "enum",
                      id);
    names_[id] = n;
    return n;
  }
  json descriptor(uint32_t id, int depth = 0) {
    id = t_.resolve(TypeRef{id}).id;
    const struct btf_type* bt = id ? t_.record(TypeRef{id}) : nullptr;
    if (bt == nullptr || depth > 64) return {{"kind", "base"}, {"name", "void"}};
    if (btf_is_int(bt) || btf_is_float(bt)) return {{"kind", "base"}, {"name", str(bt->name_off)}};
    if (btf_is_ptr(bt)) return {{"kind", "pointer"}, {"subtype", descriptor(bt->type, depth + 1)}};
    if (btf_is_array(bt))
      return {{"kind", "array"},
              {"count", btf_array(bt)->nelems},
              {"subtype", descriptor(btf_array(bt)->type, depth + 1)}};
    if (btf_is_struct(bt)) return {{"kind", "struct"}, {"name", name_of(id)}};
    if (btf_is_union(bt)) return {{"kind", "union"}, {"name", name_of(id)}};
    if (btf_is_fwd(bt))
      return {{"kind", btf_kflag(bt) ? "union" : "struct"}, {"name", str(bt->name_off)}};
    if (btf_is_enum(bt) || btf_is_enum64(bt)) return {{"kind", "enum"}, {"name", name_of(id)}};
    if (btf_is_func_proto(bt) || btf_is_func(bt)) return {{"kind", "function"}};
    return {{"kind", "base"}, {"name", "void"}};
  }

  const Types& t_;
  std::unordered_map<uint32_t, std::string> names_;
};

// ISF numbers are all integers (sizes, offsets, addresses, counts, enum values); a float
// ("8e102") would make nlohmann's conversions to integer types undefined behaviour
// (found by tests/fuzz/fuzz_isf). Iterative: how deep the nesting goes is the file's say.
bool only_integer_numbers(const json& doc) {
  std::vector<const json*> todo{&doc};
  while (!todo.empty()) {
    const json* j = todo.back();
    todo.pop_back();
    if (j->is_number_float()) return false;
    if (j->is_structured())
      for (const json& child : *j) todo.push_back(&child);
  }
  return true;
}

Result<IsfProfile> isf_profile(const json& doc) {
  if (!only_integer_numbers(doc)) return isf_error("malformed: a number that is not an integer");
  auto builder = IsfToBtf(doc).run();
  if (!builder) return builder.error();
  NFM_ASSIGN(Types types, builder->build());

  std::vector<Symbol> symbols;
  std::string banner;
  const json& syms = doc.at("symbols");
  if (!syms.is_object()) return isf_error("symbols is not an object");
  for (const auto& [name, s] : syms.items()) {
    if (!s.is_object() || !s.contains("address") || !s["address"].is_number_integer())
      return isf_error("symbol '" + name + "' has no address");
    symbols.push_back({s["address"].get<uint64_t>(), 'T', name});
    if (name == "linux_banner" && s.contains("constant_data") && s["constant_data"].is_string()) {
      banner = base64_decode(s["constant_data"].get<std::string>());
      banner.resize(strnlen(banner.c_str(), banner.size()));
      if (auto nl = banner.find('\n'); nl != banner.npos) banner.resize(nl);
    }
  }
  return IsfProfile{SymbolTable(std::move(symbols)), std::move(types), std::move(banner)};
}

}  // namespace

Result<IsfProfile> parse_isf(std::span<const uint8_t> bytes) {
  std::vector<uint8_t> plain;
  if (detect_compression(bytes) == Compression::xz) {
    auto d = decompress(bytes, Compression::xz, bytes.size() * 8);
    if (!d) return isf_error("corrupt .xz stream: " + d.error().message);
    plain = std::move(d).value();
    bytes = plain;
  }
  json doc = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return isf_error("not valid JSON (truncated or not a symbol table)");
  if (!doc.contains("metadata") || !doc.contains("user_types") || !doc.contains("symbols"))
    return isf_error("missing metadata, user_types or symbols: not a Volatility symbol table");
  // A value of the wrong JSON type ("signed": 0) makes nlohmann throw: a malformed
  // file, not a crash (found by tests/fuzz/fuzz_isf).
  try {
    return isf_profile(doc);
  } catch (const json::exception& e) {
    return isf_error(std::string("malformed: ") + e.what());
  }
}

Result<IsfProfile> load_isf(const std::string& path) {
  NFM_ASSIGN(std::vector<uint8_t> bytes, read_file_bytes(path));
  auto p = parse_isf(bytes);
  if (!p) return Error{p.error().code, path + ": " + p.error().message};
  return p;
}

Result<void> write_isf(const std::string& path, const Types& types, const SymbolTable& symbols,
                       const std::string& banner, const std::string& producer_note) {
  json doc = BtfToIsf(types).run();
  json syms = json::object();
  for (size_t i = 0; i < symbols.size(); ++i) {
    const SymbolRef s = symbols.at(i);
    const std::string name(s.name);
    if (syms.contains(name)) continue;
    auto at = symbols.lookup(s.name);  // the one lookup() gives: globals first
    syms[name] = {{"address", at ? *at : s.address}};
  }
  if (!banner.empty() && syms.contains("linux_banner"))
    syms["linux_banner"]["constant_data"] = base64_encode(banner + "\n" + std::string(1, '\0'));
  doc["symbols"] = std::move(syms);
  doc["metadata"] = {{"format", "6.2.0"},
                     {"producer", {{"name", "nfm"}, {"version", "0.1.0"}, {"note", producer_note}}},
                     {"linux", {{"symbols", json::array()}, {"types", json::array()}}}};
  const std::string text = doc.dump();
  std::vector<uint8_t> out;
  if (path.size() > 3 && path.compare(path.size() - 3, 3, ".xz") == 0) {
    NFM_ASSIGN(out, xz_compress(text));
  } else {
    out.assign(text.begin(), text.end());
  }
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return errno_error(errno, tmp);
  const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return make_error(Errc::io, "cannot write " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return errno_error(err, path);
  }
  return {};
}

}  // namespace nfm
