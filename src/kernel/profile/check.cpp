#include "kernel/profile/check.h"

#include <fmt/format.h>

#include "kernel/object.h"

namespace nfm {

namespace {

// Without CONFIG_RANDOMIZE_MEMORY the direct map starts at a fixed base
// (arch/x86/include/asm/page_64_types.h __PAGE_OFFSET_BASE_L4/_L5).
constexpr uint64_t kPageOffsetL4 = 0xffff888000000000ULL;
constexpr uint64_t kPageOffsetL5 = 0xff11000000000000ULL;

std::string first_line(std::string s) {
  if (auto nl = s.find('\n'); nl != s.npos) s.resize(nl);
  return s;
}

}  // namespace

Result<std::string> check_symbols(const ProfileTarget& target, const SymbolTable& symbols,
                                  std::string_view symbols_source) {
  const KernelLocation& loc = target.location;
  // A symbol table from another build puts well-known objects elsewhere.
  for (const char* name : {"init_uts_ns", "init_top_pgt", "_stext", "linux_banner", "init_task"}) {
    auto expected = loc.reference_symbol(name);
    if (!expected) continue;
    auto got = symbols.lookup(name);
    if (!got || *got != *expected)
      return make_error(
          Errc::mismatch,
          fmt::format(
              "symbols ({}) do not match the guest kernel {}: {} is at 0x{:x} in the guest, {}",
              symbols_source, loc.release, name, *expected,
              got ? fmt::format("0x{:x} in the profile", *got)
                  : std::string("absent from the profile")));
  }
  auto banner_at = symbols.lookup("linux_banner");
  if (!banner_at) return make_error(Errc::not_found, "no linux_banner symbol");
  NFM_ASSIGN(std::string banner, read_c_string(target.space, *banner_at, 512));
  if (banner.rfind("Linux version ", 0) != 0)
    return make_error(Errc::mismatch,
                      fmt::format("symbols ({}) do not match the guest kernel {}: linux_banner "
                                  "does not read \"Linux version\"",
                                  symbols_source, loc.release));
  // A VMCOREINFO found by scanning memory must be the kernel's own text, not a copy
  // a guest process planted with another BUILD-ID (the profile cache's key).
  const auto& info = loc.vmcoreinfo;
  if (info && info->found_at != 0) {
    if (auto data_at = symbols.lookup("vmcoreinfo_data")) {
      NFM_ASSIGN(uint64_t data, target.space.read_value<uint64_t>(*data_at));
      NFM_ASSIGN(std::string text, read_c_string(target.space, data, 4096));
      auto own = VmcoreInfo::parse(text);
      if (!own || own->entries() != info->entries())
        return make_error(Errc::mismatch,
                          fmt::format("VMCOREINFO at 0x{:x} is not the kernel's own (its "
                                      "vmcoreinfo_data at 0x{:x} reads otherwise): stale or "
                                      "forged",
                                      info->found_at, data));
    }
  }
  return first_line(std::move(banner));
}

Result<KernelRegions> read_regions(const ProfileTarget& target, const SymbolTable& symbols) {
  // CONFIG_RANDOMIZE_MEMORY: the region bases are variables in the image.
  auto read_base = [&](const char* name, uint64_t fallback) -> Result<uint64_t> {
    auto at = symbols.lookup(name);
    if (!at) return fallback;
    return target.space.read_value<uint64_t>(*at);
  };
  const int levels = target.location.levels;
  const bool l5 = levels == 5;
  KernelRegions r;
  NFM_ASSIGN(r.page_offset_base, read_base("page_offset_base", l5 ? kPageOffsetL5 : kPageOffsetL4));
  NFM_ASSIGN(r.vmalloc_base,
             read_base("vmalloc_base", l5 ? 0xffa0000000000000ULL : 0xffffc90000000000ULL));
  NFM_ASSIGN(r.vmemmap_base,
             read_base("vmemmap_base", l5 ? 0xffd4000000000000ULL : 0xffffea0000000000ULL));
  if (!x86_64::is_canonical(r.page_offset_base, levels) || r.page_offset_base < (1ULL << 63))
    return make_error(Errc::bad_format,
                      fmt::format("implausible page_offset_base 0x{:x}", r.page_offset_base));
  target.space.set_direct_map(r.page_offset_base, target.space.memory().end());
  return r;
}

Result<void> check_types(const ProfileTarget& target, const SymbolTable& symbols,
                         const Types& types, std::string_view symbols_source,
                         std::string_view types_source) {
  const KernelLocation& loc = target.location;
  AddressSpace& space = target.space;
  // VMCOREINFO carries a few layouts of its own: types from another build disagree.
  static const VmcoreInfo kNoInfo;
  const VmcoreInfo& info = loc.vmcoreinfo ? *loc.vmcoreinfo : kNoInfo;
  for (const auto& [key, value] : info.entries()) {
    if (key.rfind("OFFSET(", 0) != 0) continue;
    const std::string path = key.substr(7, key.size() - 8);
    const auto dot = path.find('.');
    if (dot == path.npos) continue;
    auto field = types.member(path.substr(0, dot), path.substr(dot + 1));
    if (!field) continue;  // e.g. VMCOREINFO names a member BTF spells differently
    if (field->offset != *info.offset(path))
      return make_error(
          Errc::mismatch,
          fmt::format("types ({}) do not match the guest kernel {}: {} is at {} in "
                      "the guest, {} in the profile",
                      types_source, loc.release, path, *info.offset(path), field->offset));
  }
  // init_task is the swapper: pid 0, a list of tasks that points back at it.
  NFM_ASSIGN(uint64_t init_task, symbols.lookup("init_task"));
  NFM_ASSIGN(Field comm, types.member("task_struct", "comm"));
  NFM_ASSIGN(Field pid, types.member("task_struct", "pid"));
  NFM_ASSIGN(Field tasks, types.member("task_struct", "tasks"));
  NFM_ASSIGN(std::string name, read_c_string(space, init_task + comm.offset, comm.size));
  NFM_ASSIGN(int32_t pid_value, space.read_value<int32_t>(init_task + pid.offset));
  NFM_ASSIGN(uint64_t next, space.read_value<uint64_t>(init_task + tasks.offset));
  auto back = space.read_value<uint64_t>(next + 8);
  if (name.rfind("swapper", 0) != 0 || pid_value != 0 || !back || *back != init_task + tasks.offset)
    return make_error(
        Errc::mismatch,
        fmt::format("init_task does not validate (comm \"{}\", pid {}): the profile ({}, "
                    "{}) does not fit the guest kernel {}",
                    name, pid_value, symbols_source, types_source, loc.release));
  return {};
}

}  // namespace nfm
