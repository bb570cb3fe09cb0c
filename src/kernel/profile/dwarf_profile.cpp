#include "kernel/profile/dwarf_profile.h"

#include <bpf/btf.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gelf.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <unordered_map>

#include "kernel/profile/btf_builder.h"
#include "kernel/profile/vmlinuz.h"
#include "memory/mapped_file.h"

namespace nfm {

namespace {

using Kind = BtfBuilder::Kind;

// An open ELF (libelf over the file, mmapped by libelf) and its DWARF.
struct ElfHandle {
  int fd = -1;
  Elf* elf = nullptr;
  Dwarf* dwarf = nullptr;
  ~ElfHandle() {
    if (dwarf) dwarf_end(dwarf);
    if (elf) elf_end(elf);
    if (fd >= 0) close(fd);
  }
};

Result<void> open_elf(const std::string& path, ElfHandle* h) {
  h->fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (h->fd < 0) return errno_error(errno, path);
  elf_version(EV_CURRENT);
  h->elf = elf_begin(h->fd, ELF_C_READ_MMAP, nullptr);
  if (h->elf == nullptr || elf_kind(h->elf) != ELF_K_ELF)
    return make_error(Errc::bad_format, path + ": not an ELF file");
  return {};
}

Elf_Scn* find_section(Elf* elf, const char* want, GElf_Shdr* out) {
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf, &shstrndx) != 0) return nullptr;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr shdr;
    if (!gelf_getshdr(scn, &shdr)) continue;
    const char* name = elf_strptr(elf, shstrndx, shdr.sh_name);
    if (name && std::strcmp(name, want) == 0) {
      if (out) *out = shdr;
      return scn;
    }
  }
  return nullptr;
}

// nm's letter for an ELF symbol, from its section: text, read-only, bss or data.
char symbol_letter(Elf* elf, const GElf_Sym& sym) {
  char c = 'D';
  if (sym.st_shndx == SHN_ABS) {
    c = 'A';
  } else if (Elf_Scn* scn = elf_getscn(elf, sym.st_shndx)) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr)) {
      if (shdr.sh_flags & SHF_EXECINSTR)
        c = 'T';
      else if (shdr.sh_type == SHT_NOBITS)
        c = 'B';
      else if (!(shdr.sh_flags & SHF_WRITE))
        c = 'R';
    }
  }
  const bool global = GELF_ST_BIND(sym.st_info) != STB_LOCAL;
  return global ? c : static_cast<char>(c - 'A' + 'a');
}

Result<SymbolTable> read_symtab(Elf* elf, const std::string& path) {
  GElf_Shdr shdr;
  Elf_Scn* scn = find_section(elf, ".symtab", &shdr);
  if (scn == nullptr)
    return make_error(Errc::not_found, path + ": no .symtab (a stripped vmlinux)");
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (data == nullptr || shdr.sh_entsize == 0)
    return make_error(Errc::bad_format, path + ": unreadable .symtab");
  const size_t n = shdr.sh_size / shdr.sh_entsize;
  std::vector<Symbol> out;
  out.reserve(n);
  for (size_t i = 1; i < n; ++i) {
    GElf_Sym sym;
    if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
    const int type = GELF_ST_TYPE(sym.st_info);
    if (type == STT_SECTION || type == STT_FILE || sym.st_shndx == SHN_UNDEF) continue;
    const char* name = elf_strptr(elf, shdr.sh_link, sym.st_name);
    if (name == nullptr || *name == '\0') continue;
    out.push_back({sym.st_value, symbol_letter(elf, sym), name});
  }
  if (out.empty()) return make_error(Errc::not_found, path + ": .symtab holds no symbols");
  return SymbolTable(std::move(out));
}

class DwarfToBtf {
 public:
  explicit DwarfToBtf(Dwarf* dwarf) : dwarf_(dwarf) {}

  Result<BtfBuilder> run() {
    Dwarf_CU* cu = nullptr;
    Dwarf_Die cudie;
    uint8_t unit_type = 0;
    Dwarf_Half version = 0;
    size_t units = 0;
    while (dwarf_get_units(dwarf_, cu, &cu, &version, &unit_type, &cudie, nullptr) == 0) {
      ++units;
      Dwarf_Die child;
      if (dwarf_child(&cudie, &child) != 0) continue;
      do {
        switch (dwarf_tag(&child)) {
          case DW_TAG_structure_type:
          case DW_TAG_union_type:
          case DW_TAG_enumeration_type:
          case DW_TAG_typedef:
          case DW_TAG_base_type:
            convert(&child);
            break;
          default:
            break;
        }
      } while (dwarf_siblingof(&child, &child) == 0);
      drain();
    }
    if (units == 0) return make_error(Errc::bad_format, "no DWARF compilation units");
    if (too_deep_)
      return make_error(Errc::bad_format,
                        fmt::format("types nest deeper than {} levels (a cycle?)", kMaxDepth));
    // Declarations never defined anywhere stay forward declarations.
    for (auto& [key, id] : pending_decls_) {
      BtfBuilder::Node& n = b_.node(id);
      n.kind = n.kind == Kind::union_ ? Kind::fwd_union : Kind::fwd_struct;
      n.size = 0;
    }
    return std::move(b_);
  }

 private:
  static std::string name_of(Dwarf_Die* die) {
    const char* n = dwarf_diename(die);
    return n ? n : "";
  }
  static uint64_t udata(Dwarf_Die* die, unsigned attr, uint64_t fallback = 0) {
    Dwarf_Attribute a;
    Dwarf_Word w;
    if (dwarf_attr(die, attr, &a) && dwarf_formudata(&a, &w) == 0) return w;
    return fallback;
  }
  static bool has(Dwarf_Die* die, unsigned attr) { return dwarf_hasattr(die, attr); }

  uint32_t type_of(Dwarf_Die* die) {
    Dwarf_Attribute a;
    Dwarf_Die t;
    if (!dwarf_attr_integrate(die, DW_AT_type, &a) || !dwarf_formref_die(&a, &t)) return 0;
    return convert(&t);
  }

  uint32_t convert(Dwarf_Die* die) {
    const Dwarf_Off off = dwarf_dieoffset(die);
    if (auto it = by_die_.find(off); it != by_die_.end()) return it->second;
    // Types nest by value a few dozen levels deep at most; pointers are reserved
    // before their pointee, so only a malformed file (a const whose type is itself,
    // found by the fuzzer) recurses further. Stop it before the stack does.
    if (depth_ >= kMaxDepth) {
      too_deep_ = true;
      return 0;
    }
    ++depth_;
    uint32_t id = convert_new(die);
    --depth_;
    by_die_.emplace(off, id);
    return id;
  }

  uint32_t add_ref(Kind k, uint32_t ref) { return b_.add({.kind = k, .ref = ref}); }

  uint32_t convert_new(Dwarf_Die* die) {
    switch (dwarf_tag(die)) {
      case DW_TAG_base_type:
        return base_type(die);
      case DW_TAG_pointer_type:
      case DW_TAG_reference_type:
      case DW_TAG_rvalue_reference_type: {
        // Reserve first: the pointee may lead back here.
        uint32_t id = add_ref(Kind::pointer, 0);
        by_die_.emplace(dwarf_dieoffset(die), id);
        b_.node(id).ref = type_of(die);
        return id;
      }
      case DW_TAG_const_type:
        return add_ref(Kind::const_, type_of(die));
      case DW_TAG_volatile_type:
        return add_ref(Kind::volatile_, type_of(die));
      case DW_TAG_restrict_type:
        return add_ref(Kind::restrict_, type_of(die));
      case DW_TAG_atomic_type:
        return type_of(die);  // _Atomic T has T's layout
      case DW_TAG_typedef: {
        const std::string key = "t:" + name_of(die);
        if (auto it = by_name_.find(key); it != by_name_.end()) return it->second;
        uint32_t id = b_.add({.kind = Kind::typedef_, .name = name_of(die)});
        by_name_.emplace(key, id);
        by_die_.emplace(dwarf_dieoffset(die), id);
        b_.node(id).ref = type_of(die);
        return id;
      }
      case DW_TAG_array_type:
        return array(die);
      case DW_TAG_structure_type:
      case DW_TAG_class_type:
      case DW_TAG_union_type:
        return composite(die);
      case DW_TAG_enumeration_type:
        return enumeration(die);
      case DW_TAG_subroutine_type:
        return add_ref(Kind::func_proto, type_of(die));
      default:
        return 0;  // unspecified (void), pointer-to-member...: nothing Types asks about
    }
  }

  uint32_t base_type(Dwarf_Die* die) {
    const std::string name = name_of(die);
    const std::string key = "b:" + name;
    if (auto it = by_name_.find(key); it != by_name_.end()) return it->second;
    uint32_t size = static_cast<uint32_t>(udata(die, DW_AT_byte_size, 0));
    const uint64_t enc = udata(die, DW_AT_encoding, DW_ATE_unsigned);
    BtfBuilder::Node n{.name = name, .size = size};
    if (enc == DW_ATE_float || enc == DW_ATE_complex_float) {
      n.kind = Kind::float_;
      if (size != 2 && size != 4 && size != 8 && size != 12 && size != 16) n.size = 16;
    } else {
      n.kind = Kind::int_;
      // pahole's encodings: signed char is a signed int, unsigned char plain.
      if (enc == DW_ATE_signed || enc == DW_ATE_signed_char) n.encoding = BTF_INT_SIGNED;
      if (enc == DW_ATE_boolean) n.encoding = BTF_INT_BOOL;
      if (size != 1 && size != 2 && size != 4 && size != 8 && size != 16) n.size = 8;
    }
    uint32_t id = b_.add(std::move(n));
    by_name_.emplace(key, id);
    return id;
  }

  uint32_t array(Dwarf_Die* die) {
    std::vector<uint32_t> counts;
    Dwarf_Die child;
    if (dwarf_child(die, &child) == 0) {
      do {
        if (dwarf_tag(&child) != DW_TAG_subrange_type) continue;
        Dwarf_Attribute a;
        Dwarf_Sword s = 0;
        uint32_t count = 0;
        if (dwarf_attr(&child, DW_AT_count, &a) && dwarf_formsdata(&a, &s) == 0 && s > 0) {
          count = static_cast<uint32_t>(s);
        } else if (dwarf_attr(&child, DW_AT_upper_bound, &a) && dwarf_formsdata(&a, &s) == 0 &&
                   s >= 0) {
          count =
              static_cast<uint32_t>(s + 1 - static_cast<int64_t>(udata(&child, DW_AT_lower_bound)));
        }
        counts.push_back(count);  // 0: a flexible array member
      } while (dwarf_siblingof(&child, &child) == 0);
    }
    if (counts.empty()) counts.push_back(0);
    uint32_t element = type_of(die);
    b_.array_index_type();
    for (size_t i = counts.size(); i-- > 0;)
      element = b_.add({.kind = Kind::array, .ref = element, .count = counts[i]});
    return element;
  }

  uint32_t enumeration(Dwarf_Die* die) {
    BtfBuilder::Node n{.kind = Kind::enum_, .name = name_of(die)};
    n.size = static_cast<uint32_t>(udata(die, DW_AT_byte_size, 4));
    // The underlying type (DWARF 3+) says whether values are signed.
    Dwarf_Attribute a;
    Dwarf_Die under;
    if (dwarf_attr(die, DW_AT_type, &a) && dwarf_formref_die(&a, &under)) {
      Dwarf_Die resolved;
      if (dwarf_peel_type(&under, &resolved) == 0) {
        const uint64_t enc = udata(&resolved, DW_AT_encoding, DW_ATE_unsigned);
        n.is_signed = enc == DW_ATE_signed || enc == DW_ATE_signed_char;
      }
    }
    Dwarf_Die child;
    if (dwarf_child(die, &child) == 0) {
      do {
        if (dwarf_tag(&child) != DW_TAG_enumerator) continue;
        Dwarf_Attribute v;
        Dwarf_Sword s = 0;
        Dwarf_Word u = 0;
        int64_t value = 0;
        if (!dwarf_attr(&child, DW_AT_const_value, &v)) continue;
        // A signed enum's values are read signed; others unsigned, else signed.
        const bool is_signed_value = (n.is_signed && dwarf_formsdata(&v, &s) == 0) ||
                                     (dwarf_formudata(&v, &u) != 0 && dwarf_formsdata(&v, &s) == 0);
        value = is_signed_value ? s : static_cast<int64_t>(u);
        n.enumerators.emplace_back(name_of(&child), value);
      } while (dwarf_siblingof(&child, &child) == 0);
    }
    // Anonymous enums (enum { TASK_COMM_LEN = 16 }) are told apart by their first name.
    const std::string key =
        "e:" + (n.name.empty()
                    ? "{" + (n.enumerators.empty() ? std::string() : n.enumerators[0].first)
                    : n.name);
    if (auto it = by_name_.find(key); it != by_name_.end()) return it->second;
    uint32_t id = b_.add(std::move(n));
    by_name_.emplace(key, id);
    return id;
  }

  uint32_t composite(Dwarf_Die* die) {
    const bool is_union = dwarf_tag(die) == DW_TAG_union_type;
    const std::string name = name_of(die);
    const bool declaration = has(die, DW_AT_declaration);
    const std::string key = std::string(is_union ? "u:" : "s:") + name;
    if (!name.empty()) {
      if (auto it = by_name_.find(key); it != by_name_.end()) return it->second;
      if (auto it = pending_decls_.find(key); it != pending_decls_.end()) {
        if (declaration) return it->second;
        // The definition of a type only declared so far: fill the placeholder.
        uint32_t id = it->second;
        pending_decls_.erase(it);
        b_.node(id).size = static_cast<uint32_t>(udata(die, DW_AT_byte_size));
        by_name_.emplace(key, id);
        queue_.push_back(dwarf_dieoffset(die));
        return id;
      }
    }
    uint32_t id = b_.add({.kind = is_union ? Kind::union_ : Kind::struct_,
                          .name = name,
                          .size = static_cast<uint32_t>(udata(die, DW_AT_byte_size))});
    if (declaration) {
      pending_decls_.emplace(key, id);
      return id;
    }
    if (!name.empty()) by_name_.emplace(key, id);
    by_die_.emplace(dwarf_dieoffset(die), id);
    queue_.push_back(dwarf_dieoffset(die));
    return id;
  }

  // Members are converted from a queue, not recursively: struct graphs through
  // pointers are as deep as the kernel is big.
  void drain() {
    while (!queue_.empty()) {
      Dwarf_Off off = queue_.front();
      queue_.pop_front();
      Dwarf_Die die;
      if (!dwarf_offdie(dwarf_, off, &die)) continue;
      const std::string name = name_of(&die);
      const bool is_union = dwarf_tag(&die) == DW_TAG_union_type;
      uint32_t id = 0;
      if (auto it = by_die_.find(off); it != by_die_.end()) id = it->second;
      if (id == 0 && !name.empty())
        if (auto it = by_name_.find(std::string(is_union ? "u:" : "s:") + name);
            it != by_name_.end())
          id = it->second;
      if (id == 0) continue;
      by_die_.emplace(off, id);
      std::vector<BtfBuilder::Member> members;
      Dwarf_Die child;
      if (dwarf_child(&die, &child) == 0) {
        do {
          if (dwarf_tag(&child) != DW_TAG_member) continue;
          members.push_back(member(&child));
        } while (dwarf_siblingof(&child, &child) == 0);
      }
      b_.node(id).members = std::move(members);
    }
  }

  BtfBuilder::Member member(Dwarf_Die* m) {
    BtfBuilder::Member out;
    out.name = name_of(m);
    out.type = type_of(m);
    out.bitfield_bits = static_cast<uint32_t>(udata(m, DW_AT_bit_size));
    Dwarf_Attribute a;
    if (dwarf_attr(m, DW_AT_data_bit_offset, &a)) {
      Dwarf_Word w = 0;
      dwarf_formudata(&a, &w);
      out.bit_offset = static_cast<uint32_t>(w);
      return out;
    }
    uint64_t bytes = 0;
    if (dwarf_attr(m, DW_AT_data_member_location, &a)) {
      Dwarf_Word w = 0;
      Dwarf_Op* ops = nullptr;
      size_t nops = 0;
      if (dwarf_formudata(&a, &w) == 0) {
        bytes = w;
      } else if (dwarf_getlocation(&a, &ops, &nops) == 0 && nops == 1 &&
                 ops[0].atom == DW_OP_plus_uconst) {
        bytes = ops[0].number;
      }
    }
    uint64_t bits = bytes * 8;
    // DWARF 2/3 bitfields count DW_AT_bit_offset from the storage unit's most
    // significant bit; on little-endian that is bits from the top of byte_size.
    if (out.bitfield_bits && has(m, DW_AT_bit_offset)) {
      uint64_t unit = udata(m, DW_AT_byte_size, 0);
      if (unit == 0) {
        int64_t s = btf_size_hint(out.type);
        unit = s > 0 ? static_cast<uint64_t>(s) : 4;
      }
      bits += unit * 8 - udata(m, DW_AT_bit_offset) - out.bitfield_bits;
    }
    out.bit_offset = static_cast<uint32_t>(bits);
    return out;
  }

  // Byte size of a converted type, following typedefs and qualifiers.
  int64_t btf_size_hint(uint32_t id) {
    for (int guard = 0; guard < 32 && id != 0; ++guard) {
      const BtfBuilder::Node& n = b_.node(id);
      switch (n.kind) {
        case Kind::int_:
        case Kind::float_:
        case Kind::enum_:
        case Kind::struct_:
        case Kind::union_:
          return n.size;
        case Kind::pointer:
          return 8;
        case Kind::typedef_:
        case Kind::const_:
        case Kind::volatile_:
        case Kind::restrict_:
          id = n.ref;
          continue;
        default:
          return -1;
      }
    }
    return -1;
  }

  static constexpr int kMaxDepth = 256;

  Dwarf* dwarf_;
  BtfBuilder b_;
  int depth_ = 0;          // convert() calls under way
  bool too_deep_ = false;  // one of them went past kMaxDepth
  std::unordered_map<Dwarf_Off, uint32_t> by_die_;
  std::unordered_map<std::string, uint32_t> by_name_;
  std::unordered_map<std::string, uint32_t> pending_decls_;
  std::deque<Dwarf_Off> queue_;
};

}  // namespace

bool has_dwarf(const std::string& path) {
  ElfHandle h;
  if (!open_elf(path, &h)) return false;
  return find_section(h.elf, ".debug_info", nullptr) != nullptr;
}

Result<DwarfProfile> load_dwarf_profile(const std::string& path) {
  ElfHandle h;
  NFM_TRY(open_elf(path, &h));
  if (find_section(h.elf, ".debug_info", nullptr) == nullptr)
    return make_error(Errc::not_found,
                      path + ": no DWARF (.debug_info); is this the -dbg vmlinux?");
  NFM_ASSIGN(SymbolTable symbols, read_symtab(h.elf, path));
  h.dwarf = dwarf_begin_elf(h.elf, DWARF_C_READ, nullptr);
  if (h.dwarf == nullptr)
    return make_error(Errc::bad_format,
                      fmt::format("{}: libdw cannot read its DWARF: {}", path, dwarf_errmsg(-1)));
  DwarfToBtf converter(h.dwarf);
  auto builder = converter.run();
  if (!builder) return Error{builder.error().code, path + ": " + builder.error().message};
  NFM_ASSIGN(Types types, builder->build());

  // The banner, to name this kernel in errors and key the profile cache.
  return DwarfProfile{std::move(symbols), std::move(types), dwarf_vmlinux_banner(path)};
}

std::string dwarf_vmlinux_banner(const std::string& path) {
  if (auto mapped = MappedFile::open(path)) {
    if (auto elf = ElfImage::parse(std::span<const uint8_t>(mapped->data(), mapped->size()))) {
      if (auto banner = read_linux_banner(*elf)) return *banner;
    }
  }
  return {};
}

}  // namespace nfm
