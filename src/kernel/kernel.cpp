#include "kernel/kernel.h"

#include <bpf/btf.h>
#include <dirent.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "kernel/profile/dwarf_profile.h"
#include "kernel/profile/isf.h"
#include "kernel/profile/kallsyms.h"
#include "kernel/profile/profile_cache.h"
#include "kernel/profile/system_map.h"
#include "kernel/profile/vmlinuz.h"
#include "memory/crawl_cache.h"

namespace nfm {

namespace {

// Without CONFIG_RANDOMIZE_MEMORY the direct map starts at a fixed base
// (arch/x86/include/asm/page_64_types.h __PAGE_OFFSET_BASE_L4/_L5).
constexpr uint64_t kPageOffsetL4 = 0xffff888000000000ULL;
constexpr uint64_t kPageOffsetL5 = 0xff11000000000000ULL;

// The kernel image is at most KERNEL_IMAGE_SIZE (1 GiB); kallsyms lives in
// .rodata, well inside the first 64 MiB after _stext on every Debian kernel.
constexpr uint64_t kKallsymsWindow = 96ULL << 20;
constexpr size_t kMaxBtfBytes = 64ULL << 20;

std::string first_line(std::string s) {
  if (auto nl = s.find('\n'); nl != s.npos) s.resize(nl);
  return s;
}

// Finds "vmlinuz-*" and "System.map-*" in a kernel directory (e.g. the lab's
// ~/.cache/nfm/kernels/RELEASE or an unpacked /boot).
void scan_kernel_dir(const std::string& dir, std::string* vmlinuz, std::string* system_map) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "vmlinuz" || n.rfind("vmlinuz-", 0) == 0 || n == "vmlinux") *vmlinuz = dir + "/" + n;
    if (n == "System.map" || n.rfind("System.map-", 0) == 0) *system_map = dir + "/" + n;
  }
  closedir(d);
}

}  // namespace

Result<std::string> Kernel::read_string(uint64_t va, size_t max) {
  std::string out;
  char chunk[64];
  while (out.size() < max) {
    // Never read across a page boundary in one go: the next page may be unmapped
    // while the string ends before it.
    const size_t to_page_end = 4096 - (va & 4095);
    const size_t n = std::min({sizeof chunk, to_page_end, max - out.size()});
    NFM_TRY(space_->read(va, chunk, n));
    const size_t len = strnlen(chunk, n);
    out.append(chunk, len);
    if (len < n) break;
    va += n;
  }
  return out;
}

Result<std::unique_ptr<X86_64AddressSpace>> Kernel::user_space(uint64_t pgd_va) {
  if (!in_direct_map(pgd_va)) return fault_at(pgd_va, "page table pointer outside the direct map");
  auto space =
      std::make_unique<X86_64AddressSpace>(*memory_, pgd_va - page_offset_base_, location_.levels);
  // The kernel half of every process's tables is the kernel's own; keep the fast path.
  space->set_direct_map(page_offset_base_, memory_->end());
  return space;
}

Result<std::unique_ptr<Kernel>> Kernel::attach(PhysicalMemoryPtr memory,
                                               const ProfileOptions& options) {
  std::unique_ptr<Kernel> k(new Kernel());
  // Sources read by system calls get a per-crawl page cache; mapped ones are
  // already as fast as a cache would be.
  const auto& ranges = memory->ranges();
  if (!ranges.empty() && memory->view(ranges.front().start, 1) == nullptr) {
    auto cache = std::make_unique<CrawlCache>(std::move(memory));
    k->cache_ = cache.get();
    memory = std::move(cache);
  }
  k->memory_ = std::move(memory);
  // Locating probes a few bytes of every page: past the cache, which would copy
  // (and keep resident) whole pages for them.
  PhysicalMemory& raw = k->cache_ ? k->cache_->inner() : *k->memory_;
  NFM_ASSIGN(k->location_, locate_kernel(raw, options.skip_kernels));
  k->identity_.release = k->location_.release;
  if (k->location_.vmcoreinfo)
    k->identity_.build_id = k->location_.vmcoreinfo->build_id().value_or("");
  k->space_ =
      std::make_unique<X86_64AddressSpace>(*k->memory_, k->location_.dtb, k->location_.levels);

  // The page tables and phys_base must agree on where the kernel text is.
  if (auto stext = k->location_.reference_symbol("_stext")) {
    auto pa = k->space_->translate(*stext);
    if (!pa || *pa != k->location_.image_pa(*stext))
      return make_error(
          Errc::mismatch,
          fmt::format("kernel page table at 0x{:x} does not map _stext where phys_base "
                      "says (the kernel's own description is stale or forged)",
                      k->location_.dtb));
  }
  std::string key;
  bool warm = false;
  if (options.use_cache) {
    key = profile_key(k->location_.release, k->identity_.build_id, k->profile_source_key(options));
    NFM_ASSIGN(warm, k->attach_warm(options, key));
  } else {
    k->identity_.profile_cache = "off";
  }
  if (!warm) {
    NFM_TRY(k->load_file_profile(options));
    NFM_TRY(k->load_symbols(options));
    NFM_TRY(k->read_layout_bases());
    NFM_TRY(k->load_types(options));
    NFM_TRY(k->validate());
    if (options.use_cache) k->store_profile(options, key);
  }
  k->image_ = {};
  k->image_path_.clear();
  k->file_profile_.reset();
  k->read_percpu_offsets();
  return k;
}

namespace {

// Link-time tables from files move by the KASLR shift, measured on _stext.
SymbolTable relocate(const KernelLocation& loc, const SymbolTable& table) {
  int64_t delta = static_cast<int64_t>(loc.kaslr_offset);
  auto runtime = loc.reference_symbol("_stext");
  auto linked = table.lookup("_stext");
  if (runtime && linked) delta = static_cast<int64_t>(*runtime - *linked);
  return table.shifted(delta);  // a view: no copy, whatever the shift
}

// "Linux version 6.1.0-56-cloud-amd64 (...)" -> "6.1.0-56-cloud-amd64".
std::string banner_release(const std::string& banner) {
  static constexpr std::string_view kPrefix = "Linux version ";
  if (banner.rfind(kPrefix, 0) != 0) return {};
  const size_t end = banner.find(' ', kPrefix.size());
  return banner.substr(kPrefix.size(), end == banner.npos ? banner.npos : end - kPrefix.size());
}

std::string file_identity(const std::string& path) {
  struct stat st {};
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  if (stat(path.c_str(), &st) != 0) return path;
  return fmt::format("{}:{}:{}.{}", ec ? path : abs.string(), st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec);
}

}  // namespace

struct Kernel::FileProfile {
  SymbolTable symbols;  // link-time addresses
  std::optional<Types> types;
  std::string banner;  // of the kernel the file describes, when it says
  std::string source;  // "DWARF vmlinux PATH", "ISF PATH"
};

std::string Kernel::profile_source_key(const ProfileOptions& o) const {
  std::string key;
  for (const auto& [name, path] : {std::pair{"map", &o.system_map},
                                   {"btf", &o.btf},
                                   {"vmlinux", &o.vmlinux},
                                   {"dir", &o.kernel_dir},
                                   {"dwarf", &o.dwarf},
                                   {"isf", &o.isf}})
    if (!path->empty()) key += fmt::format("{}={};", name, file_identity(*path));
  return key.empty() ? "guest" : key;
}

Result<bool> Kernel::attach_warm(const ProfileOptions& options, const std::string& key) {
  const ProfileCache cache(options.cache_dir.empty() ? profile_cache_dir() : options.cache_dir);
  auto cached = cache.load(key);
  if (!cached) {
    if (cached.error().code == Errc::not_found) {
      identity_.profile_cache = "cold";
    } else {
      // Corrupt, truncated or from another nfm: rebuilt below, and said so.
      identity_.profile_cache = "cold, replaced a bad cache file: " + cached.error().message;
      cache.evict(key);
    }
    return false;
  }
  const CompiledProfile& p = **cached;
  symbols_ = relocate(location_, p.symbols);
  identity_.symbols_source = p.symbols_source;
  identity_.types_source = p.types_source;
  auto fits = [&]() -> Result<void> {
    NFM_TRY(check_symbols());
    if (identity_.banner != p.banner)
      return make_error(Errc::mismatch, fmt::format("the cached profile is for \"{}\", the guest "
                                                    "runs \"{}\"",
                                                    p.banner, identity_.banner));
    NFM_TRY(read_layout_bases());
    types_ = p.types;
    return validate();
  }();
  if (!fits) {
    cache.evict(key);
    symbols_ = SymbolTable();
    types_.reset();
    identity_.banner.clear();
    identity_.profile_cache =
        "cold, replaced a cached profile that did not fit: " + fits.error().message;
    return false;
  }
  identity_.profile_cache = "warm " + cache.path_of(key);
  return true;
}

void Kernel::store_profile(const ProfileOptions& options, const std::string& key) {
  const ProfileCache cache(options.cache_dir.empty() ? profile_cache_dir() : options.cache_dir);
  auto p = std::make_shared<CompiledProfile>();
  p->key = key;
  p->release = location_.release;
  p->banner = identity_.banner;
  p->build_id = identity_.build_id;
  p->symbols_source = identity_.symbols_source;
  p->types_source = identity_.types_source;
  p->symbols = symbols_;
  p->types = types_;
  auto stored = cache.store(std::move(p));
  // Keep what attach_warm found wrong with the old file, if anything.
  const std::string before = identity_.profile_cache.empty() ? "cold" : identity_.profile_cache;
  identity_.profile_cache = stored ? before + "; saved to " + cache.path_of(key)
                                   : before + "; not saved: " + stored.error().to_string();
}

Result<const std::vector<uint8_t>*> Kernel::vmlinux_image(const std::string& path) {
  if (image_path_ != path) {
    NFM_ASSIGN(image_, extract_vmlinux_file(path));
    image_path_ = path;
  }
  return &image_;
}

Result<void> Kernel::load_file_profile(const ProfileOptions& options) {
  std::string dwarf = options.dwarf;
  // A --vmlinux that is an ELF with DWARF is the -dbg vmlinux: read it as such.
  if (dwarf.empty() && options.isf.empty() && !options.vmlinux.empty() &&
      has_dwarf(options.vmlinux))
    dwarf = options.vmlinux;
  auto fp = std::make_shared<FileProfile>();
  if (!dwarf.empty()) {
    NFM_ASSIGN(DwarfProfile d, load_dwarf_profile(dwarf));
    *fp = FileProfile{std::move(d.symbols), std::move(d.types), std::move(d.banner),
                      "DWARF vmlinux " + dwarf};
  } else if (!options.isf.empty()) {
    NFM_ASSIGN(IsfProfile i, load_isf(options.isf));
    *fp = FileProfile{std::move(i.symbols), std::move(i.types), std::move(i.banner),
                      "ISF " + options.isf};
  } else {
    return {};
  }
  // Another kernel's profile: say which two kernels, before anything is read with it.
  const std::string profile_release = banner_release(fp->banner);
  if (!profile_release.empty() && profile_release != location_.release)
    return make_error(Errc::mismatch,
                      fmt::format("the profile ({}) does not match the guest kernel {}: it is for "
                                  "Linux {} (\"{}\")",
                                  fp->source, location_.release, profile_release, fp->banner));
  file_profile_ = std::move(fp);
  return {};
}

Result<void> Kernel::load_symbols(const ProfileOptions& options) {
  const KernelLocation& loc = location_;
  std::string system_map = options.system_map;
  std::string vmlinux = file_profile_ ? std::string() : options.vmlinux;
  if (!options.kernel_dir.empty()) {
    std::string dir_vmlinuz, dir_map;
    scan_kernel_dir(options.kernel_dir, &dir_vmlinuz, &dir_map);
    if (vmlinux.empty()) vmlinux = dir_vmlinuz;
    // Debian's System.map is a stub: only use a directory's map if it parses.
    if (system_map.empty() && !dir_map.empty() && load_system_map(dir_map)) system_map = dir_map;
    if (vmlinux.empty() && system_map.empty())
      return make_error(Errc::not_found, "no vmlinuz or System.map in " + options.kernel_dir);
  }

  if (!system_map.empty()) {
    NFM_ASSIGN(SymbolTable table, load_system_map(system_map));
    symbols_ = relocate(loc, table);
    identity_.symbols_source = "System.map " + system_map;
  } else if (file_profile_) {
    symbols_ = relocate(loc, file_profile_->symbols);
    identity_.symbols_source = file_profile_->source;
  } else if (!vmlinux.empty()) {
    NFM_ASSIGN(const std::vector<uint8_t>* bytes, vmlinux_image(vmlinux));
    NFM_ASSIGN(ElfImage elf, ElfImage::parse(*bytes));
    NFM_ASSIGN(SymbolTable table, read_vmlinux_kallsyms(elf));
    symbols_ = relocate(loc, table);
    identity_.symbols_source = "kallsyms of " + vmlinux;
  } else if (loc.symbols) {
    symbols_ = *loc.symbols;  // decoded while locating the kernel
    identity_.symbols_source = "guest kallsyms (found in physical memory)";
  } else {
    const VmcoreInfo& info = *loc.vmcoreinfo;
    // From the guest: VMCOREINFO names the tables on 6.0+; older kernels are
    // searched for them by structure inside the kernel image.
    auto tables = kallsyms_tables_from([&](const std::string& n) { return info.symbol(n); });
    if (tables) {
      NFM_ASSIGN(symbols_, decode_kallsyms(*space_, *tables));
      identity_.symbols_source = "guest kallsyms (VMCOREINFO)";
    } else {
      auto stext = info.symbol("_stext");
      if (!stext)
        return make_error(Errc::not_found,
                          "VMCOREINFO has no SYMBOL(_stext) to search kallsyms from");
      NFM_ASSIGN(KallsymsLocation where, find_kallsyms(*space_, *stext, *stext + kKallsymsWindow));
      NFM_ASSIGN(symbols_, decode_kallsyms(*space_, where.tables));
      identity_.symbols_source = "guest kallsyms (found by structure)";
    }
  }
  return check_symbols();
}

Result<void> Kernel::check_symbols() {
  const KernelLocation& loc = location_;
  // A symbol table from another build puts well-known objects elsewhere.
  for (const char* name : {"init_uts_ns", "init_top_pgt", "_stext", "linux_banner", "init_task"}) {
    auto expected = loc.reference_symbol(name);
    if (!expected) continue;
    auto got = symbols_.lookup(name);
    if (!got || *got != *expected)
      return make_error(
          Errc::mismatch,
          fmt::format(
              "symbols ({}) do not match the guest kernel {}: {} is at 0x{:x} in the guest, {}",
              identity_.symbols_source, location_.release, name, *expected,
              got ? fmt::format("0x{:x} in the profile", *got)
                  : std::string("absent from the profile")));
  }
  auto banner_at = symbols_.lookup("linux_banner");
  if (!banner_at) return make_error(Errc::not_found, "no linux_banner symbol");
  NFM_ASSIGN(std::string banner, read_string(*banner_at, 512));
  if (banner.rfind("Linux version ", 0) != 0)
    return make_error(Errc::mismatch,
                      fmt::format("symbols ({}) do not match the guest kernel {}: linux_banner "
                                  "does not read \"Linux version\"",
                                  identity_.symbols_source, location_.release));
  identity_.banner = first_line(banner);
  if (file_profile_ && !file_profile_->banner.empty() && file_profile_->banner != identity_.banner)
    return make_error(Errc::mismatch,
                      fmt::format("the profile ({}) does not match the guest kernel {}: it is for "
                                  "\"{}\", the guest runs \"{}\"",
                                  file_profile_->source, location_.release, file_profile_->banner,
                                  identity_.banner));
  return {};
}

Result<void> Kernel::read_layout_bases() {
  // CONFIG_RANDOMIZE_MEMORY: the region bases are variables in the image.
  auto read_base = [&](const char* name, uint64_t fallback) -> Result<uint64_t> {
    auto at = symbols_.lookup(name);
    if (!at) return fallback;
    return read_value<uint64_t>(*at);
  };
  const bool l5 = location_.levels == 5;
  NFM_ASSIGN(page_offset_base_, read_base("page_offset_base", l5 ? kPageOffsetL5 : kPageOffsetL4));
  NFM_ASSIGN(vmalloc_base_,
             read_base("vmalloc_base", l5 ? 0xffa0000000000000ULL : 0xffffc90000000000ULL));
  NFM_ASSIGN(vmemmap_base_,
             read_base("vmemmap_base", l5 ? 0xffd4000000000000ULL : 0xffffea0000000000ULL));
  if (!x86_64::is_canonical(page_offset_base_, location_.levels) ||
      page_offset_base_ < (1ULL << 63))
    return make_error(Errc::bad_format,
                      fmt::format("implausible page_offset_base 0x{:x}", page_offset_base_));
  space_->set_direct_map(page_offset_base_, memory_->end());
  return {};
}

Result<void> Kernel::load_types(const ProfileOptions& options) {
  std::string btf_file = options.btf;
  std::string vmlinux = file_profile_ ? std::string() : options.vmlinux;
  if (btf_file.empty() && vmlinux.empty() && !file_profile_ && !options.kernel_dir.empty()) {
    std::string ignored;
    scan_kernel_dir(options.kernel_dir, &vmlinux, &ignored);
  }
  if (btf_file.empty() && file_profile_) {
    types_ = file_profile_->types;
    identity_.types_source = file_profile_->source;
    return {};
  }
  if (!btf_file.empty() || !vmlinux.empty()) {
    const std::string& path = btf_file.empty() ? vmlinux : btf_file;
    std::vector<uint8_t> raw;
    const std::vector<uint8_t>* bytes = nullptr;
    if (path == image_path_) {
      bytes = &image_;  // already decompressed for its kallsyms
    } else {
      NFM_ASSIGN(raw, read_file_bytes(path));
      bytes = &raw;
      if (bytes->size() >= 4 &&
          std::memcmp(bytes->data(),
                      "\x7f"
                      "ELF",
                      4) != 0 &&
          !(bytes->size() >= 2 && (*bytes)[0] == 0x9f && (*bytes)[1] == 0xeb)) {
        NFM_ASSIGN(raw, extract_vmlinux(raw));  // a vmlinuz
      }
    }
    if (bytes->size() >= 4 && std::memcmp(bytes->data(),
                                          "\x7f"
                                          "ELF",
                                          4) == 0) {
      NFM_ASSIGN(ElfImage elf, ElfImage::parse(*bytes));
      NFM_ASSIGN(auto btf, read_vmlinux_btf(elf));
      NFM_ASSIGN(types_, Types::from_btf_bytes(btf));
    } else {
      NFM_ASSIGN(types_, Types::from_btf_bytes(*bytes));
    }
    identity_.types_source = "BTF of " + path;
    return {};
  }
  // The running kernel keeps its BTF in the image between __start_BTF and __stop_BTF.
  auto start = symbols_.lookup("__start_BTF");
  auto stop = symbols_.lookup("__stop_BTF");
  if (!start || !stop || *stop <= *start || *stop - *start > kMaxBtfBytes)
    return make_error(
        Errc::not_found,
        "the guest kernel has no BTF (__start_BTF/__stop_BTF); pass --btf or --vmlinux");
  std::vector<uint8_t> blob(*stop - *start);
  NFM_TRY(read(*start, blob.data(), blob.size()));
  NFM_ASSIGN(types_, Types::from_btf_bytes(blob));
  identity_.types_source = "guest BTF";
  return {};
}

void Kernel::prefetch(std::span<const Range> ranges) {
  if (!cache_) return;
  constexpr uint64_t kPage = 4096;
  std::vector<ReadOp>& ops = prefetch_ops_;
  ops.clear();
  for (const Range& r : ranges) {
    // Page by page: virtually contiguous is not physically contiguous outside the direct map.
    for (uint64_t va = r.va, left = r.len; left > 0;) {
      const uint64_t n = std::min<uint64_t>(left, kPage - va % kPage);
      auto pa = space_->translate(va);
      if (!pa) break;
      ops.push_back({*pa, nullptr, static_cast<size_t>(n)});
      va += n, left -= n;
    }
  }
  cache_->prefetch(ops);
}

AddressSpace& Kernel::fresh_space() {
  if (!cache_) return *space_;
  if (!fresh_space_) {
    fresh_space_ =
        std::make_unique<X86_64AddressSpace>(cache_->inner(), location_.dtb, location_.levels);
    fresh_space_->set_direct_map(page_offset_base_, memory_->end());
  }
  return *fresh_space_;
}

void Kernel::begin_crawl() {
  if (cache_) cache_->begin_crawl();
  space_->flush();
  if (fresh_space_) fresh_space_->flush();
  read_percpu_offsets();
}

void Kernel::read_percpu_offsets() {
  // A uniprocessor build has neither symbol: every "per-cpu" variable is plain.
  percpu_offsets_.assign(1, 0);
  auto offsets = symbols_.lookup("__per_cpu_offset");
  auto online = symbols_.lookup("__cpu_online_mask");
  if (!offsets || !online) return;
  std::vector<uint64_t> found;
  constexpr int kMaxCpus = 8192;  // NR_CPUS on Debian's amd64 kernels
  for (int word = 0; word < kMaxCpus / 64; ++word) {
    auto bits = read_value<uint64_t>(*online + word * 8);
    if (!bits) break;
    for (uint64_t b = *bits; b; b &= b - 1) {
      const int cpu = word * 64 + __builtin_ctzll(b);
      auto off = read_value<uint64_t>(*offsets + cpu * 8);
      if (off) found.push_back(*off);
    }
    if (*bits == 0 && !found.empty()) break;  // online CPUs are dense from 0
  }
  if (!found.empty()) percpu_offsets_ = std::move(found);
}

Result<void> Kernel::validate() {
  // VMCOREINFO carries a few layouts of its own: types from another build disagree.
  static const VmcoreInfo kNoInfo;
  const VmcoreInfo& info = location_.vmcoreinfo ? *location_.vmcoreinfo : kNoInfo;
  for (const auto& [key, value] : info.entries()) {
    if (key.rfind("OFFSET(", 0) != 0) continue;
    const std::string path = key.substr(7, key.size() - 8);
    const auto dot = path.find('.');
    if (dot == path.npos) continue;
    auto field = types_->member(path.substr(0, dot), path.substr(dot + 1));
    if (!field) continue;  // e.g. VMCOREINFO names a member BTF spells differently
    if (field->offset != *info.offset(path))
      return make_error(
          Errc::mismatch,
          fmt::format("types ({}) do not match the guest kernel {}: {} is at {} in the "
                      "guest, {} in the profile",
                      identity_.types_source, location_.release, path, *info.offset(path),
                      field->offset));
  }
  // init_task is the swapper: pid 0, a list of tasks that points back at it.
  NFM_ASSIGN(uint64_t init_task, symbol("init_task"));
  NFM_ASSIGN(Field comm, types_->member("task_struct", "comm"));
  NFM_ASSIGN(Field pid, types_->member("task_struct", "pid"));
  NFM_ASSIGN(Field tasks, types_->member("task_struct", "tasks"));
  NFM_ASSIGN(std::string name, read_string(init_task + comm.offset, comm.size));
  NFM_ASSIGN(int32_t pid_value, read_value<int32_t>(init_task + pid.offset));
  NFM_ASSIGN(uint64_t next, read_pointer(init_task + tasks.offset));
  auto back = read_pointer(next + 8);
  if (name.rfind("swapper", 0) != 0 || pid_value != 0 || !back || *back != init_task + tasks.offset)
    return make_error(
        Errc::mismatch,
        fmt::format("init_task does not validate (comm \"{}\", pid {}): the profile ({}, "
                    "{}) does not fit the guest kernel {}",
                    name, pid_value, identity_.symbols_source, identity_.types_source,
                    location_.release));
  return {};
}

}  // namespace nfm
