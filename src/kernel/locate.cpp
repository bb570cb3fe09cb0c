#include "kernel/locate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "arch/x86_64_paging.h"
#include "kernel/profile/kallsyms.h"
#include "memory/page_store.h"
#include "memory/scan.h"

namespace nfm {

namespace {

// Physical memory seen as an address space with va == pa: the kernel image is
// physically contiguous, so its tables can be parsed where they lie.
class PhysicalIdentitySpace : public AddressSpace {
 public:
  explicit PhysicalIdentitySpace(PhysicalMemory& memory) : memory_(memory) {}
  Result<void> read(uint64_t va, void* dst, size_t len) override {
    return memory_.read(va, dst, len);
  }
  Result<uint64_t> translate(uint64_t va) override { return va; }

 private:
  PhysicalMemory& memory_;
};

// CONFIG_PHYSICAL_ALIGN: both KASLR shifts are multiples of it (2 MiB at least).
constexpr uint64_t kKernelAlign = 2ULL << 20;

}  // namespace

std::optional<uint64_t> KernelLocation::reference_symbol(const std::string& name) const {
  if (vmcoreinfo) {
    // x86-64 spells init_top_pgt "swapper_pg_dir" in VMCOREINFO (a #define).
    auto v = vmcoreinfo->symbol(name);
    if (!v && name == "init_top_pgt") v = vmcoreinfo->symbol("swapper_pg_dir");
    return v;
  }
  if (symbols) {
    auto v = symbols->lookup(name);
    if (v) return *v;
  }
  return std::nullopt;
}

namespace {

// A VMCOREINFO candidate as a location, if it agrees with the page tables it names.
Result<KernelLocation> location_from(PhysicalMemory& memory, VmcoreInfo info) {
  KernelLocation loc;
  loc.release = info.osrelease();
  loc.kaslr_offset = info.kernel_offset().value_or(0);
  // arch/x86/kernel/machine_kexec_64.c: NUMBER(phys_base), SYMBOL(init_top_pgt),
  // NUMBER(pgtable_l5_enabled) (4.14+).
  auto phys_base = info.number("phys_base");
  auto top = info.symbol("init_top_pgt");
  if (!top) top = info.symbol("swapper_pg_dir");
  if (!phys_base || !top)
    return make_error(Errc::bad_format,
                      "VMCOREINFO lacks NUMBER(phys_base) or SYMBOL(init_top_pgt)");
  loc.phys_base = *phys_base;
  loc.dtb = loc.image_pa(*top);
  loc.levels = info.number("pgtable_l5_enabled").value_or(0) ? 5 : 4;
  if (!memory.contains(loc.dtb, 4096))
    return make_error(
        Errc::mismatch,
        fmt::format("VMCOREINFO puts the kernel page table at 0x{:x}, outside guest RAM", loc.dtb));
  // The page tables and phys_base must agree on where the kernel text is.
  if (auto stext = info.symbol("_stext")) {
    X86_64AddressSpace paging(memory, loc.dtb, loc.levels);
    auto pa = paging.translate(*stext);
    if (!pa || *pa != loc.image_pa(*stext))
      return make_error(
          Errc::mismatch,
          fmt::format("kernel page table at 0x{:x} does not map _stext where phys_base "
                      "says (the kernel's own description is stale or forged)",
                      loc.dtb));
  }
  loc.build_id = info.build_id().value_or("");
  loc.vmcoreinfo = std::move(info);
  loc.method = "vmcoreinfo";
  return loc;
}

// The kernel image's own GNU build-id note (include/asm-generic/vmlinux.lds.h puts
// every .note.* between __start_notes and __stop_notes): the same hex VMCOREINFO
// states, so a kernel found by either route has one profile cache key.
std::string build_id_from_notes(PhysicalMemory& memory, const KernelLocation& loc,
                                const SymbolTable& symbols) {
  constexpr uint32_t kNtGnuBuildId = 3;
  constexpr uint64_t kMaxNotes = 4096;  // a handful of notes; the guest cannot make us read more
  auto start = symbols.lookup("__start_notes"), stop = symbols.lookup("__stop_notes");
  if (!start || !stop || *stop <= *start || *stop - *start > kMaxNotes) return {};
  std::vector<uint8_t> notes(*stop - *start);
  if (!memory.read(loc.image_pa(*start), notes.data(), notes.size())) return {};
  auto id = find_elf_note(notes, "GNU", kNtGnuBuildId);
  if (!id || id->empty() || id->size() > 64) return {};
  std::string hex;
  for (uint8_t b : *id) hex += fmt::format("{:02x}", b);
  return hex;
}

std::string describe_candidate(const VmcoreInfo& info) {
  return fmt::format("VMCOREINFO at 0x{:x} (BUILD-ID {})", info.found_at,
                     info.build_id().value_or("none"));
}

}  // namespace

Result<KernelLocation> locate_by_vmcoreinfo(PhysicalMemory& memory,
                                            const std::vector<uint64_t>& skip_dtbs) {
  std::optional<Result<KernelLocation>> first;
  locate_kernels(
      memory, skip_dtbs,
      [&](KernelLocation loc) {
        first = std::move(loc);
        return false;
      },
      nullptr, /*kallsyms=*/false);
  if (!first) return make_error(Errc::not_found, "no VMCOREINFO note in guest memory");
  return std::move(*first);
}

Result<KernelLocation> locate_by_kallsyms(PhysicalMemory& memory) {
  PhysicalIdentitySpace space(memory);
  std::optional<KallsymsLocation> where;
  for (const PhysRange& r : memory.ranges()) {
    auto found = find_kallsyms(space, r.start, r.end());
    if (found) {
      where = std::move(found).value();
      break;
    }
  }
  if (!where) return make_error(Errc::not_found, "no kallsyms tables in guest memory");
  NFM_ASSIGN(SymbolTable symbols, decode_kallsyms(space, where->tables));

  // The decoded addresses are runtime virtual addresses. Where one symbol's bytes
  // lie physically gives phys_base; linux_banner is easy to recognise.
  NFM_ASSIGN(uint64_t banner_va, symbols.lookup("linux_banner"));
  NFM_ASSIGN(uint64_t top_va, symbols.lookup("init_top_pgt"));
  KernelLocation loc;
  bool found = false;
  scan_physical(memory, "Linux version ", [&](uint64_t pa) {
    const int64_t phys_base = static_cast<int64_t>(pa - (banner_va - kStartKernelMap));
    if (static_cast<uint64_t>(phys_base) % kKernelAlign != 0) return true;
    KernelLocation candidate;
    candidate.phys_base = phys_base;
    candidate.dtb = candidate.image_pa(top_va);
    if (!memory.contains(candidate.dtb, 4096)) return true;
    // 5-level paging is a variable in the image (arch/x86/kernel/head64.c).
    candidate.levels = 4;
    if (auto l5 = symbols.lookup("__pgtable_l5_enabled")) {
      uint32_t enabled = 0;
      if (memory.read(candidate.image_pa(*l5), &enabled, sizeof enabled) && enabled)
        candidate.levels = 5;
    }
    // The page tables must map the banner where the arithmetic says.
    X86_64AddressSpace paging(memory, candidate.dtb, candidate.levels);
    auto mapped = paging.translate(banner_va);
    if (!mapped || *mapped != pa) return true;
    loc = candidate;
    found = true;
    return false;
  });
  if (!found)
    return make_error(Errc::not_found,
                      "kallsyms found, but no linux_banner where the page tables map it");

  char banner[256] = {};
  NFM_TRY(memory.read(loc.image_pa(banner_va), banner, sizeof banner - 1));
  std::string_view text(banner);
  text.remove_prefix(std::strlen("Linux version "));
  loc.release = std::string(text.substr(0, text.find(' ')));
  if (auto text_va = symbols.lookup("_text")) {
    // _text is linked at __START_KERNEL (16 MiB above the map start).
    loc.kaslr_offset = *text_va - kStartKernelMap - (16ULL << 20);
  }
  loc.build_id = build_id_from_notes(memory, loc, symbols);
  loc.symbols = std::move(symbols);
  const KallsymsSpan span = kallsyms_span(where->tables);  // physical: the identity space
  loc.kallsyms_va = loc.image_va(span.va);
  loc.kallsyms_size = span.size;
  loc.kallsyms_relocated_at = span.relocated_at;
  loc.method = "kallsyms in physical memory";
  return loc;
}

void locate_kernels(PhysicalMemory& memory, const std::vector<uint64_t>& skip_dtbs,
                    const std::function<bool(KernelLocation)>& visit,
                    std::vector<std::string>* rejected, bool kallsyms,
                    std::optional<uint64_t> vmcoreinfo_hint) {
  bool stopped = false;
  for_each_vmcoreinfo(
      memory,
      [&](VmcoreInfo info) {
        const std::string what = describe_candidate(info);
        auto loc = location_from(memory, std::move(info));
        if (!loc) {
          if (rejected) rejected->push_back(what + ": " + loc.error().message);
          return true;
        }
        if (std::find(skip_dtbs.begin(), skip_dtbs.end(), loc->dtb) != skip_dtbs.end()) return true;
        stopped = !visit(std::move(loc).value());
        return !stopped;
      },
      vmcoreinfo_hint);
  // No copy was taken (or none found): the kernel's own kallsyms. A guest that forges
  // its VMCOREINFO (every copy) must not blind nfm.
  if (stopped || !kallsyms) return;
  auto by_tables = locate_by_kallsyms(memory);
  if (!by_tables) {
    if (rejected) rejected->push_back("no kallsyms: " + by_tables.error().message);
    return;
  }
  if (std::find(skip_dtbs.begin(), skip_dtbs.end(), by_tables->dtb) != skip_dtbs.end()) return;
  visit(std::move(by_tables).value());
}

Result<KernelLocation> locate_kernel(PhysicalMemory& memory,
                                     const std::vector<uint64_t>& skip_dtbs) {
  std::optional<KernelLocation> first;
  std::vector<std::string> rejected;
  locate_kernels(
      memory, skip_dtbs,
      [&](KernelLocation loc) {
        first = std::move(loc);
        return false;
      },
      &rejected);
  if (first) return std::move(*first);
  return no_kernel_found(rejected);
}

Error no_kernel_found(const std::vector<std::string>& rejected) {
  std::string why;
  for (const std::string& r : rejected) why += (why.empty() ? "" : "; ") + r;
  return make_error(Errc::not_found,
                    "no Linux kernel found in guest memory (" +
                        (why.empty() ? std::string("only kernels asked to be skipped") : why) +
                        ")");
}

}  // namespace nfm
