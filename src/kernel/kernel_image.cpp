#include "kernel/kernel_image.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "kernel/locate.h"
#include "kernel/profile/vmlinuz.h"

namespace nfm {
namespace {

// The image is a host file, but a wrong or damaged one must not read out of bounds.
template <typename T>
std::optional<T> load_at(std::span<const uint8_t> bytes, uint64_t offset) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof(T)) return std::nullopt;
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof v);
  return v;
}

// An integer member of a struct in raw bytes, sign-extended when `is_signed`.
std::optional<int64_t> member_value(std::span<const uint8_t> entry, const Field& f,
                                    bool is_signed) {
  switch (f.size) {
    case 1:
      if (auto v = load_at<uint8_t>(entry, f.offset))
        return is_signed ? int64_t{static_cast<int8_t>(*v)} : int64_t{*v};
      break;
    case 2:
      if (auto v = load_at<uint16_t>(entry, f.offset))
        return is_signed ? int64_t{static_cast<int16_t>(*v)} : int64_t{*v};
      break;
    case 4:
      if (auto v = load_at<uint32_t>(entry, f.offset))
        return is_signed ? int64_t{static_cast<int32_t>(*v)} : int64_t{*v};
      break;
    case 8:
      if (auto v = load_at<uint64_t>(entry, f.offset)) return static_cast<int64_t>(*v);
      break;
  }
  return std::nullopt;
}

// Link-time virtual address -> offset in the ELF file, through its PT_LOAD segments.
// The per-cpu segment is linked at 0 but loaded inside the image: its relocations
// name it by its load address (the physical one, in the kernel's mapping).
std::optional<uint64_t> file_offset(const ElfImage& elf, uint64_t va, uint64_t len) {
  for (const ElfImage::Segment& s : elf.load_segments()) {
    const uint64_t base = s.vaddr >= kStartKernelMap ? s.vaddr : s.paddr + kStartKernelMap;
    if (va >= base && va - base < s.filesz && s.filesz - (va - base) >= len)
      return s.offset + (va - base);
  }
  return std::nullopt;
}

// A table of the image: its bytes and the runtime address of its first byte.
struct Table {
  std::span<const uint8_t> bytes;
  uint64_t va = 0;
};

class SiteReader {
 public:
  SiteReader(const ElfImage& elf, uint64_t kaslr, const SymbolTable& symbols, const Types& types)
      : elf_(elf), kaslr_(kaslr), symbols_(symbols), types_(types) {}

  // A section the image keeps (init sections the running kernel has freed).
  std::optional<Table> section(std::string_view name) const {
    const ElfImage::Section* s = elf_.section(name);
    if (!s || s->addr < kStartKernelMap) return std::nullopt;
    auto bytes = elf_.section_bytes(name);
    if (!bytes) return std::nullopt;
    return Table{*bytes, s->addr + kaslr_};
  }

  // A table between two linker symbols, read from the image (not from the guest).
  Result<std::optional<Table>> between(std::string_view start, std::string_view stop) const {
    auto a = symbols_.lookup(start);
    auto b = symbols_.lookup(stop);
    if (!a || !b) return std::optional<Table>();
    if (*b < *a || *b - *a > (uint64_t{64} << 20) || *a - kaslr_ < kStartKernelMap)
      return make_error(Errc::bad_format, fmt::format("{}..{} is not a table", start, stop));
    auto off = file_offset(elf_, *a - kaslr_, *b - *a);
    if (!off)
      return make_error(Errc::bad_format,
                        fmt::format("{}..{} is not in the image's file contents", start, stop));
    return std::optional<Table>(Table{elf_.bytes().subspan(*off, *b - *a), *a});
  }

  // Tables of s32 offsets, each relative to itself: `len` bytes at each target.
  void relative_sites(const Table& t, uint32_t len, PatchSiteKind kind,
                      std::vector<PatchSite>& out) const {
    for (uint64_t off = 0; off + 4 <= t.bytes.size(); off += 4) {
      const int32_t rel = *load_at<int32_t>(t.bytes, off);
      out.push_back({t.va + off + static_cast<uint64_t>(int64_t{rel}), len, kind});
    }
  }

  // Tables of structs: `visit` gets each entry's bytes and runtime address.
  template <typename Visit>
  Result<void> entries(const Table& t, std::string_view type, Visit visit) const {
    NFM_ASSIGN(uint64_t size, types_.size_of(type));
    if (size == 0 || size > 64) return make_error(Errc::bad_format, fmt::format("struct {}", type));
    // The last entry may end short of the struct's size: its trailing padding is not
    // emitted (the fields are bounds-checked on their own).
    for (uint64_t off = 0; off < t.bytes.size(); off += size)
      visit(t.bytes.subspan(off, std::min(size, t.bytes.size() - off)), t.va + off);
    return {};
  }

  Result<Field> field(std::string_view type, std::string_view member) const {
    return types_.member(type, member);
  }

 private:
  const ElfImage& elf_;
  uint64_t kaslr_;
  const SymbolTable& symbols_;
  const Types& types_;
};

Result<void> read_sites(const SiteReader& r, const SymbolTable& symbols,
                        std::vector<PatchSite>& sites) {
  // Alternatives: instr_offset relative to the entry's own field.
  if (auto t = r.section(".altinstructions")) {
    NFM_ASSIGN(Field instr, r.field("alt_instr", "instr_offset"));
    NFM_ASSIGN(Field len, r.field("alt_instr", "instrlen"));
    NFM_TRY(r.entries(*t, "alt_instr", [&](std::span<const uint8_t> e, uint64_t va) {
      auto rel = member_value(e, instr, true);
      auto n = member_value(e, len, false);
      if (rel && n)
        sites.push_back({va + instr.offset + static_cast<uint64_t>(*rel), static_cast<uint32_t>(*n),
                         PatchSiteKind::alternative});
    }));
  }
  // Paravirt (until 6.8): an absolute pointer, relocated with the image.
  if (auto t = r.section(".parainstructions")) {
    NFM_ASSIGN(Field instr, r.field("paravirt_patch_site", "instr"));
    NFM_ASSIGN(Field len, r.field("paravirt_patch_site", "len"));
    NFM_TRY(r.entries(*t, "paravirt_patch_site", [&](std::span<const uint8_t> e, uint64_t) {
      auto at = member_value(e, instr, false);
      auto n = member_value(e, len, false);
      if (at && n)
        sites.push_back(
            {static_cast<uint64_t>(*at), static_cast<uint32_t>(*n), PatchSiteKind::paravirt});
    }));
  }
  // Jump labels: a 2- or 5-byte nop or jump at `code`, to `target` when enabled.
  NFM_ASSIGN(auto jump_table, r.between("__start___jump_table", "__stop___jump_table"));
  if (jump_table) {
    NFM_ASSIGN(Field code, r.field("jump_entry", "code"));
    NFM_ASSIGN(Field target, r.field("jump_entry", "target"));
    NFM_TRY(r.entries(*jump_table, "jump_entry", [&](std::span<const uint8_t> e, uint64_t va) {
      // Relative entries (s32) on every x86 kernel since 5.0; absolute ones before.
      const bool relative = code.size == 4;
      auto c = member_value(e, code, relative);
      auto t = member_value(e, target, relative);
      if (!c || !t) return;
      const uint64_t at = relative ? va + code.offset + static_cast<uint64_t>(*c) : *c;
      const uint64_t to = relative ? va + target.offset + static_cast<uint64_t>(*t) : *t;
      sites.push_back({at, 5, PatchSiteKind::jump_label, to});
    }));
  }
  NFM_ASSIGN(auto static_calls, r.between("__start_static_call_sites", "__stop_static_call_sites"));
  if (static_calls) {
    NFM_ASSIGN(Field addr, r.field("static_call_site", "addr"));
    NFM_TRY(
        r.entries(*static_calls, "static_call_site", [&](std::span<const uint8_t> e, uint64_t va) {
          if (auto rel = member_value(e, addr, true))
            sites.push_back(
                {va + addr.offset + static_cast<uint64_t>(*rel), 5, PatchSiteKind::static_call});
        }));
  }
  auto tramp_start = symbols.lookup("__static_call_text_start");
  auto tramp_end = symbols.lookup("__static_call_text_end");
  if (tramp_start && tramp_end && *tramp_end > *tramp_start &&
      *tramp_end - *tramp_start < (uint64_t{1} << 20))
    sites.push_back({*tramp_start, static_cast<uint32_t>(*tramp_end - *tramp_start),
                     PatchSiteKind::static_call_trampoline});
  // ftrace: every function entry it can trace (absolute addresses, relocated).
  NFM_ASSIGN(auto mcount, r.between("__start_mcount_loc", "__stop_mcount_loc"));
  if (mcount)
    for (uint64_t off = 0; off + 8 <= mcount->bytes.size(); off += 8)
      if (uint64_t ip = *load_at<uint64_t>(mcount->bytes, off))
        sites.push_back({ip, 5, PatchSiteKind::ftrace});
  for (const char* name : {"ftrace_call", "ftrace_regs_call", "ftrace_graph_call"})
    if (auto at = symbols.lookup(name)) sites.push_back({*at, 5, PatchSiteKind::ftrace_caller});
  // Tables of self-relative s32 offsets.
  struct Relative {
    const char* section;
    uint32_t len;
    PatchSiteKind kind;
  };
  for (const Relative& rel : {
           Relative{".retpoline_sites", 6, PatchSiteKind::retpoline},
           Relative{".return_sites", 6, PatchSiteKind::return_thunk},
           Relative{".call_sites", 5, PatchSiteKind::call_depth},
           Relative{".ibt_endbr_seal", 4, PatchSiteKind::endbr},
           Relative{".smp_locks", 1, PatchSiteKind::smp_lock},
       })
    if (auto t = r.section(rel.section)) r.relative_sites(*t, rel.len, rel.kind, sites);
  return {};
}

std::string gnu_build_id(const ElfImage& elf) {
  auto notes = elf.section_bytes(".notes");
  if (!notes) return {};
  for (uint64_t off = 0; off + 12 <= notes->size();) {
    const uint32_t namesz = *load_at<uint32_t>(*notes, off);
    const uint32_t descsz = *load_at<uint32_t>(*notes, off + 4);
    const uint32_t type = *load_at<uint32_t>(*notes, off + 8);
    const uint64_t name_at = off + 12;
    const uint64_t desc_at = name_at + ((uint64_t{namesz} + 3) & ~uint64_t{3});
    const uint64_t next = desc_at + ((uint64_t{descsz} + 3) & ~uint64_t{3});
    if (next > notes->size()) break;
    if (type == 3 && namesz == 4 && std::memcmp(notes->data() + name_at, "GNU", 4) == 0) {
      std::string hex;
      for (uint32_t i = 0; i < descsz; ++i) hex += fmt::format("{:02x}", (*notes)[desc_at + i]);
      return hex;
    }
    off = next;
  }
  return {};
}

// The bytes of `section` at runtime addresses, minus [cut_start, cut_end).
void add_region(const ElfImage& elf, const ElfImage::Section& s, uint64_t kaslr, uint64_t cut_start,
                uint64_t cut_end, std::vector<ImageRegion>& out) {
  if (s.type == 8 /* SHT_NOBITS */ || s.offset > elf.bytes().size() ||
      elf.bytes().size() - s.offset < s.size)
    return;
  auto keep = [&](uint64_t from, uint64_t to) {  // link addresses within the section
    if (to <= from) return;
    const auto* p = elf.bytes().data() + s.offset + (from - s.addr);
    out.push_back({s.name, from + kaslr, std::vector<uint8_t>(p, p + (to - from))});
  };
  const uint64_t end = s.addr + s.size;
  if (cut_end <= s.addr || cut_start >= end) return keep(s.addr, end);
  keep(s.addr, std::max(s.addr, cut_start));
  keep(std::min(end, cut_end), end);
}

}  // namespace

const char* patch_site_kind_name(PatchSiteKind kind) {
  switch (kind) {
    case PatchSiteKind::alternative:
      return "alternative";
    case PatchSiteKind::paravirt:
      return "paravirt";
    case PatchSiteKind::jump_label:
      return "jump label";
    case PatchSiteKind::static_call:
      return "static call";
    case PatchSiteKind::static_call_trampoline:
      return "static call trampoline";
    case PatchSiteKind::ftrace:
      return "ftrace site";
    case PatchSiteKind::ftrace_caller:
      return "ftrace caller";
    case PatchSiteKind::retpoline:
      return "retpoline site";
    case PatchSiteKind::return_thunk:
      return "return thunk site";
    case PatchSiteKind::call_depth:
      return "call depth site";
    case PatchSiteKind::endbr:
      return "endbr";
    case PatchSiteKind::smp_lock:
      return "lock prefix";
    case PatchSiteKind::runtime_const:
      return "runtime constant";
  }
  return "?";
}

Result<size_t> apply_kernel_relocations(std::span<uint8_t> payload, uint64_t delta) {
  NFM_ASSIGN(ElfImage elf, ElfImage::parse(payload));
  // Walk the table backwards from the end, as the decompressor does.
  std::vector<uint32_t> lists[3];  // 32-bit, inverse 32-bit, 64-bit
  uint64_t at = payload.size() & ~uint64_t{3};
  for (auto& list : lists) {
    for (;;) {
      if (at < 4) return make_error(Errc::bad_format, "the relocation table runs off the image");
      at -= 4;
      const uint32_t v = *load_at<uint32_t>(payload, at);
      if (v == 0) break;
      list.push_back(v);
    }
  }
  // What precedes the table must be the whole ELF: a vmlinux with no table appended
  // would otherwise have its own bytes taken for relocations.
  uint64_t elf_end = 0;
  for (const ElfImage::Section& s : elf.sections())
    if (s.type != 8) elf_end = std::max(elf_end, s.offset + s.size);
  for (const ElfImage::Segment& s : elf.load_segments())
    elf_end = std::max(elf_end, s.offset + s.filesz);
  // The section header table (ELF64: e_shoff at 40, e_shentsize at 58, e_shnum at 60),
  // usually the file's last bytes.
  const uint64_t shoff = load_at<uint64_t>(payload, 40).value_or(0);
  const uint64_t shsize = uint64_t{load_at<uint16_t>(payload, 58).value_or(0)} *
                          load_at<uint16_t>(payload, 60).value_or(0);
  elf_end = std::max(elf_end, shoff + shsize);
  if (at < elf_end)
    return make_error(Errc::bad_format,
                      "no relocation table after the vmlinux (a vmlinuz's payload has one)");
  size_t unmapped = 0;
  // Adds `delta` (in the field's own width, wrapping) to each field a list names.
  auto apply = [&]<typename Field>(const std::vector<uint32_t>& list, Field delta) {
    for (uint32_t reloc : list) {
      const uint64_t va = static_cast<uint64_t>(int64_t{static_cast<int32_t>(reloc)});
      auto off = file_offset(elf, va, sizeof(Field));
      if (!off) {
        ++unmapped;
        continue;
      }
      Field v;
      std::memcpy(&v, payload.data() + *off, sizeof v);
      v += delta;
      std::memcpy(payload.data() + *off, &v, sizeof v);
    }
  };
  apply(lists[0], static_cast<uint32_t>(delta));
  apply(lists[1], static_cast<uint32_t>(0 - delta));  // inverse: per-cpu offsets shrink
  apply(lists[2], delta);
  if (unmapped)
    return make_error(Errc::bad_format,
                      fmt::format("{} relocations point outside the image's segments", unmapped));
  return static_cast<size_t>(at);
}

PatchSites::PatchSites(std::vector<PatchSite> sites) : sites_(std::move(sites)) {
  std::sort(sites_.begin(), sites_.end(),
            [](const PatchSite& a, const PatchSite& b) { return a.va < b.va; });
  reach_.reserve(sites_.size());
  uint64_t reach = 0;
  for (const PatchSite& s : sites_) reach_.push_back(reach = std::max(reach, s.va + s.len));
}

size_t PatchSites::first_after(uint64_t va) const {
  return static_cast<size_t>(
      std::upper_bound(sites_.begin(), sites_.end(), va,
                       [](uint64_t v, const PatchSite& s) { return v < s.va; }) -
      sites_.begin());
}

std::vector<const PatchSite*> PatchSites::covering(uint64_t va) const {
  std::vector<const PatchSite*> out;
  any_covering(va, [&](const PatchSite& s, size_t) {
    out.push_back(&s);
    return false;
  });
  return out;
}

Result<KernelImage> load_kernel_image(const std::string& path, uint64_t kaslr_offset,
                                      const SymbolTable& symbols, const Types& types) {
  NFM_ASSIGN(std::vector<uint8_t> payload, extract_vmlinux_file(path));
  NFM_ASSIGN(size_t elf_size, apply_kernel_relocations(payload, kaslr_offset));
  NFM_ASSIGN(ElfImage elf, ElfImage::parse(std::span<const uint8_t>(payload).first(elf_size)));
  KernelImage image{.path = path, .build_id = gnu_build_id(elf), .kaslr_offset = kaslr_offset};
  if (auto banner = read_linux_banner(elf)) image.banner = *banner;
  const ElfImage::Section* text = elf.section(".text");
  if (!text) return make_error(Errc::bad_format, path + " has no .text section");
  add_region(elf, *text, kaslr_offset, 0, 0, image.text);
  // The read-only data the kernel maps after its text, but ro_after_init: written at
  // boot (its own tables, the syscall table's neighbours), then sealed.
  auto link = [&](std::string_view name) -> uint64_t {
    auto a = symbols.lookup(name);
    return a ? *a - kaslr_offset : 0;
  };
  const uint64_t rodata_start = link("__start_rodata"), rodata_end = link("__end_rodata");
  const uint64_t rai_start = link("__start_ro_after_init"), rai_end = link("__end_ro_after_init");
  if (rodata_start && rodata_end > rodata_start)
    for (const ElfImage::Section& s : elf.sections())
      if (s.addr >= rodata_start && s.addr + s.size <= rodata_end && s.size > 0)
        add_region(elf, s, kaslr_offset, rai_start, rai_end, image.rodata);
  SiteReader reader(elf, kaslr_offset, symbols, types);
  std::vector<PatchSite> sites;
  NFM_TRY(read_sites(reader, symbols, sites));
  for (const ElfImage::Section& s : elf.sections()) {
    const bool ptr = s.name.rfind("runtime_ptr_", 0) == 0;
    if (ptr || s.name.rfind("runtime_shift_", 0) == 0)
      if (auto t = reader.section(s.name))
        reader.relative_sites(*t, ptr ? 8 : 1, PatchSiteKind::runtime_const, sites);
  }
  image.sites = PatchSites(std::move(sites));
  return image;
}

}  // namespace nfm
