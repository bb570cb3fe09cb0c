#include "kernel/profile/profile.h"

#include <dirent.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "kernel/profile/check.h"
#include "kernel/profile/dwarf_profile.h"
#include "kernel/profile/isf.h"
#include "kernel/profile/kallsyms.h"
#include "kernel/profile/profile_cache.h"
#include "kernel/profile/system_map.h"
#include "kernel/profile/vmlinuz.h"

namespace nfm {

namespace {

// The kernel image is at most KERNEL_IMAGE_SIZE (1 GiB); kallsyms lives in
// .rodata, well inside the first 64 MiB after _stext on every Debian kernel.
constexpr uint64_t kKallsymsWindow = 96ULL << 20;
constexpr size_t kMaxBtfBytes = 64ULL << 20;

// Finds "vmlinuz-*" and "System.map-*" in a kernel directory (e.g. the lab's
// ~/.cache/nfm/kernels/RELEASE or an unpacked /boot).
void scan_kernel_dir(const std::string& dir, std::string* vmlinuz, std::string* system_map) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "vmlinuz" || n.rfind("vmlinuz-", 0) == 0 || n == "vmlinux")
      *vmlinuz = fmt::format("{}/{}", dir, n);
    if (n == "System.map" || n.rfind("System.map-", 0) == 0)
      *system_map = fmt::format("{}/{}", dir, n);
  }
  closedir(d);
}

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

// A file as the cache key sees it: a changed file is another profile.
std::string file_identity(const std::string& path) {
  struct stat st {};
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  if (stat(path.c_str(), &st) != 0) return path;
  return fmt::format("{}:{}:{}.{}", ec ? path : abs.string(), st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec);
}

bool is_elf(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 4 && std::memcmp(bytes.data(),
                                          "\x7f"
                                          "ELF",
                                          4) == 0;
}

bool is_raw_btf(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x9f && bytes[1] == 0xeb;
}

constexpr const char* kGuestBtf = "guest BTF";

// A DWARF vmlinux or an ISF file: one file gives both symbols and types.
struct FileProfile {
  SymbolTable symbols;  // link-time addresses
  Types types;
  std::string banner;  // of the kernel the file describes, when it says
  std::string source;  // "DWARF vmlinux PATH", "ISF PATH"
};

// One load_profile() call: the source chosen, what it gave, and attach-time scratch
// (a vmlinuz is decompressed once for symbols and types).
class ProfileLoader {
 public:
  ProfileLoader(const ProfileOptions& options, const ProfileTarget& target)
      : options_(options), target_(target) {}

  Result<LoadedProfile> load() {
    std::string key;
    bool warm = false;
    if (options_.use_cache) {
      key = profile_key(target_.location.release, target_.location.build_id, source_key());
      NFM_ASSIGN(warm, load_cached(key));
    } else {
      cache_ = "off";
    }
    if (!warm) {
      NFM_TRY(load_file_profile());
      NFM_TRY(load_symbols());
      NFM_ASSIGN(regions_, read_regions(target_, symbols_));
      NFM_TRY(load_types());
      NFM_TRY(check_types(target_, symbols_, *types_, symbols_source_, types_source_));
      if (options_.use_cache) {
        NFM_TRY(describe_content());
        store(key);
      }
    }
    return LoadedProfile{
        std::move(symbols_),        std::move(*types_),       std::move(banner_), regions_,
        std::move(symbols_source_), std::move(types_source_), std::move(cache_),  content_.hash};
  }

 private:
  // Which files (by path, size and mtime) or "guest": part of the cache key.
  std::string source_key() const {
    const ProfileOptions& o = options_;
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

  ProfileCache cache() const {
    return ProfileCache(options_.cache_dir.empty() ? profile_cache_dir() : options_.cache_dir);
  }

  // A compiled profile from the cache, if there is one and it fits the guest.
  Result<bool> load_cached(const std::string& key) {
    const ProfileCache cache = this->cache();
    auto cached = cache.load(key);
    if (!cached) {
      if (cached.error().code == Errc::not_found) {
        cache_ = "cold";
      } else {
        // Corrupt, truncated or from another nfm: rebuilt, and said so.
        cache_ = "cold, replaced a bad cache file: " + cached.error().message;
        cache.evict(key);
      }
      return false;
    }
    const CompiledProfile& p = **cached;
    symbols_ = relocate(target_.location, p.symbols);
    symbols_source_ = p.symbols_source;
    types_source_ = p.types_source;
    auto fits = [&]() -> Result<void> {
      NFM_ASSIGN(banner_, check_symbols(target_, symbols_, symbols_source_));
      if (banner_ != p.banner)
        return make_error(Errc::mismatch, fmt::format("the cached profile is for \"{}\", the guest "
                                                      "runs \"{}\"",
                                                      p.banner, banner_));
      NFM_ASSIGN(regions_, read_regions(target_, symbols_));
      if (!p.types) return make_error(Errc::bad_format, "the cached profile holds no types");
      types_ = p.types;
      NFM_TRY(check_types(target_, symbols_, *types_, symbols_source_, types_source_));
      // Made from another guest's own tables: only if this guest's bytes are the same.
      if (p.content.any()) {
        uint64_t hash = 0;
        if (target_.known_content_hash) {
          hash = *target_.known_content_hash;
        } else {
          NFM_ASSIGN(hash, hash_content(p.content));
        }
        if (hash != p.content.hash)
          return make_error(Errc::mismatch,
                            "this guest's kallsyms or BTF bytes differ from those the cached "
                            "profile was made of (a doctored guest, or another kernel under the "
                            "same build id)");
      }
      return Result<void>();
    }();
    if (!fits) {
      cache.evict(key);
      symbols_ = SymbolTable();
      types_.reset();
      banner_.clear();
      cache_ = "cold, replaced a cached profile that did not fit: " + fits.error().message;
      return false;
    }
    cache_ = "warm " + cache.path_of(key);
    content_ = p.content;  // checked above: this guest's bytes hash to it
    return true;
  }

  void store(const std::string& key) {
    const ProfileCache cache = this->cache();
    auto p = std::make_shared<CompiledProfile>();
    p->key = key;
    p->release = target_.location.release;
    p->banner = banner_;
    p->build_id = target_.location.build_id;
    p->symbols_source = symbols_source_;
    p->types_source = types_source_;
    p->content = content_;
    p->symbols = symbols_;
    p->types = types_;
    auto stored = cache.store(p);
    // Keep what load_cached found wrong with the old file, if anything.
    const std::string before = cache_.empty() ? "cold" : cache_;
    cache_ = stored ? before + "; saved to " + cache.path_of(key)
                    : before + "; not saved: " + stored.error().to_string();
  }

  // What of this profile came from the guest's own bytes, and their hash.
  Result<void> describe_content() {
    content_ = GuestContent();
    if (kallsyms_span_.size) {
      NFM_ASSIGN(uint64_t stext, symbols_.lookup("_stext"));
      content_.kallsyms_from_stext = static_cast<int64_t>(kallsyms_span_.va - stext);
      content_.kallsyms_size = kallsyms_span_.size;
      content_.kallsyms_relocated_at = kallsyms_span_.relocated_at;
    }
    content_.btf = types_source_ == kGuestBtf;
    if (!content_.any()) return {};
    NFM_ASSIGN(content_.hash, hash_content(content_));
    return {};
  }

  // XXH3 of the guest bytes `c` names, read through this guest's page tables.
  Result<uint64_t> hash_content(const GuestContent& c) {
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                   &XXH3_freeState);
    XXH3_64bits_reset(state.get());
    // Small enough to stay in the CPU cache and to cost a warm start no page faults
    // of its own (a 1 MiB buffer cost 256 of them).
    std::vector<uint8_t> chunk(64 << 10);
    // `skip`: offset of 8 bytes left out (KASLR's relocation of relative_base).
    auto add = [&](uint64_t va, uint64_t size, uint64_t skip) -> Result<void> {
      if (size > kMaxBtfBytes) return make_error(Errc::limit, "guest content span too large");
      for (uint64_t done = 0; done < size;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size - done));
        NFM_TRY(target_.space.read(va + done, chunk.data(), n));
        for (uint64_t i = std::max(skip, done); i < std::min(skip + 8, done + n); ++i)
          chunk[i - done] = 0;
        XXH3_64bits_update(state.get(), chunk.data(), n);
        done += n;
      }
      return {};
    };
    if (c.kallsyms_size) {
      NFM_ASSIGN(uint64_t stext, symbols_.lookup("_stext"));
      NFM_TRY(add(stext + static_cast<uint64_t>(c.kallsyms_from_stext), c.kallsyms_size,
                  c.kallsyms_relocated_at));
    }
    if (c.btf) {
      NFM_ASSIGN(uint64_t start, symbols_.lookup("__start_BTF"));
      NFM_ASSIGN(uint64_t stop, symbols_.lookup("__stop_BTF"));
      if (stop <= start) return make_error(Errc::bad_format, "__stop_BTF before __start_BTF");
      NFM_TRY(add(start, stop - start, UINT64_MAX));
    }
    return XXH3_64bits_digest(state.get());
  }

  Result<const std::vector<uint8_t>*> vmlinux_image(const std::string& path) {
    if (image_path_ != path) {
      NFM_ASSIGN(image_, extract_vmlinux_file(path));
      image_path_ = path;
    }
    return &image_;
  }

  Result<void> load_file_profile() {
    std::string dwarf = options_.dwarf;
    // A --vmlinux that is an ELF with DWARF is the -dbg vmlinux: read it as such.
    if (dwarf.empty() && options_.isf.empty() && !options_.vmlinux.empty() &&
        has_dwarf(options_.vmlinux))
      dwarf = options_.vmlinux;
    // Another kernel's profile: say which two kernels, before anything is read with it.
    const std::string& release = target_.location.release;
    auto refuse_another_kernel = [&](const std::string& banner,
                                     const std::string& source) -> Result<void> {
      const std::string profile_release = banner_release(banner);
      if (!profile_release.empty() && profile_release != release)
        return make_error(Errc::mismatch,
                          fmt::format("the profile ({}) does not match the guest kernel {}: it "
                                      "is for Linux {} (\"{}\")",
                                      source, release, profile_release, banner));
      return {};
    };
    std::optional<FileProfile> fp;
    if (!dwarf.empty()) {
      // Its banner first: converting a whole kernel's DWARF takes seconds.
      NFM_TRY(refuse_another_kernel(dwarf_vmlinux_banner(dwarf), "DWARF vmlinux " + dwarf));
      NFM_ASSIGN(DwarfProfile d, load_dwarf_profile(dwarf));
      fp.emplace(FileProfile{std::move(d.symbols), std::move(d.types), std::move(d.banner),
                             "DWARF vmlinux " + dwarf});
    } else if (!options_.isf.empty()) {
      NFM_ASSIGN(IsfProfile i, load_isf(options_.isf));
      fp.emplace(FileProfile{std::move(i.symbols), std::move(i.types), std::move(i.banner),
                             "ISF " + options_.isf});
    } else {
      return {};
    }
    NFM_TRY(refuse_another_kernel(fp->banner, fp->source));
    file_profile_ = std::move(fp);
    return {};
  }

  Result<void> load_symbols() {
    const KernelLocation& loc = target_.location;
    std::string system_map = options_.system_map;
    std::string vmlinux = file_profile_ ? std::string() : options_.vmlinux;
    if (!options_.kernel_dir.empty()) {
      std::string dir_vmlinuz, dir_map;
      scan_kernel_dir(options_.kernel_dir, &dir_vmlinuz, &dir_map);
      if (vmlinux.empty()) vmlinux = dir_vmlinuz;
      // Debian's System.map is a stub: only use a directory's map if it parses.
      if (system_map.empty() && !dir_map.empty() && load_system_map(dir_map)) system_map = dir_map;
      if (vmlinux.empty() && system_map.empty())
        return make_error(Errc::not_found, "no vmlinuz or System.map in " + options_.kernel_dir);
    }

    if (!system_map.empty()) {
      NFM_ASSIGN(SymbolTable table, load_system_map(system_map));
      symbols_ = relocate(loc, table);
      symbols_source_ = "System.map " + system_map;
    } else if (file_profile_) {
      symbols_ = relocate(loc, file_profile_->symbols);
      symbols_source_ = file_profile_->source;
    } else if (!vmlinux.empty()) {
      NFM_ASSIGN(const std::vector<uint8_t>* bytes, vmlinux_image(vmlinux));
      NFM_ASSIGN(ElfImage elf, ElfImage::parse(*bytes));
      NFM_ASSIGN(SymbolTable table, read_vmlinux_kallsyms(elf));
      symbols_ = relocate(loc, table);
      symbols_source_ = "kallsyms of " + vmlinux;
    } else if (loc.symbols) {
      symbols_ = *loc.symbols;  // decoded while locating the kernel
      symbols_source_ = "guest kallsyms (found in physical memory)";
      kallsyms_span_ = {loc.kallsyms_va, loc.kallsyms_size, loc.kallsyms_relocated_at};
    } else {
      NFM_TRY(decode_guest_kallsyms());
    }
    NFM_ASSIGN(banner_, check_symbols(target_, symbols_, symbols_source_));
    if (file_profile_ && !file_profile_->banner.empty() && file_profile_->banner != banner_)
      return make_error(
          Errc::mismatch,
          fmt::format("the profile ({}) does not match the guest kernel {}: it is "
                      "for \"{}\", the guest runs \"{}\"",
                      file_profile_->source, loc.release, file_profile_->banner, banner_));
    return {};
  }

  // Zero-config symbols: the guest's own kallsyms tables. VMCOREINFO names them on
  // 6.0+; older kernels are searched for them by structure inside the kernel image.
  Result<void> decode_guest_kallsyms() {
    const VmcoreInfo& info = *target_.location.vmcoreinfo;
    auto tables = kallsyms_tables_from([&](const std::string& n) { return info.symbol(n); });
    if (tables) {
      NFM_ASSIGN(symbols_, decode_kallsyms(target_.space, *tables));
      symbols_source_ = "guest kallsyms (VMCOREINFO)";
      kallsyms_span_ = kallsyms_span(*tables);
      return {};
    }
    auto stext = info.symbol("_stext");
    if (!stext)
      return make_error(Errc::not_found,
                        "VMCOREINFO has no SYMBOL(_stext) to search kallsyms from");
    NFM_ASSIGN(KallsymsLocation where,
               find_kallsyms(target_.space, *stext, *stext + kKallsymsWindow));
    NFM_ASSIGN(symbols_, decode_kallsyms(target_.space, where.tables));
    symbols_source_ = "guest kallsyms (found by structure)";
    kallsyms_span_ = kallsyms_span(where.tables);
    return {};
  }

  Result<void> load_types() {
    std::string btf_file = options_.btf;
    std::string vmlinux = file_profile_ ? std::string() : options_.vmlinux;
    if (btf_file.empty() && vmlinux.empty() && !file_profile_ && !options_.kernel_dir.empty()) {
      std::string ignored;
      scan_kernel_dir(options_.kernel_dir, &vmlinux, &ignored);
    }
    if (btf_file.empty() && file_profile_) {
      types_ = file_profile_->types;
      types_source_ = file_profile_->source;
      return {};
    }
    if (!btf_file.empty() || !vmlinux.empty()) {
      const std::string& path = btf_file.empty() ? vmlinux : btf_file;
      NFM_ASSIGN(types_, btf_from_file(path));
      types_source_ = "BTF of " + path;
      return {};
    }
    return load_guest_btf();
  }

  // Raw BTF, an ELF with .BTF, or a vmlinuz holding one.
  Result<Types> btf_from_file(const std::string& path) {
    std::vector<uint8_t> raw;
    const std::vector<uint8_t>* bytes = nullptr;
    if (path == image_path_) {
      bytes = &image_;  // already decompressed for its kallsyms
    } else {
      NFM_ASSIGN(raw, read_file_bytes(path));
      bytes = &raw;
      if (bytes->size() >= 4 && !is_elf(*bytes) && !is_raw_btf(*bytes)) {
        NFM_ASSIGN(raw, extract_vmlinux(raw));  // a vmlinuz
      }
    }
    if (is_elf(*bytes)) {
      NFM_ASSIGN(ElfImage elf, ElfImage::parse(*bytes));
      NFM_ASSIGN(auto btf, read_vmlinux_btf(elf));
      return Types::from_btf_bytes(btf);
    }
    return Types::from_btf_bytes(*bytes);
  }

  // Zero-config types: the running kernel keeps its BTF in the image between
  // __start_BTF and __stop_BTF.
  Result<void> load_guest_btf() {
    auto start = symbols_.lookup("__start_BTF");
    auto stop = symbols_.lookup("__stop_BTF");
    if (!start || !stop || *stop <= *start || *stop - *start > kMaxBtfBytes)
      return make_error(
          Errc::not_found,
          "the guest kernel has no BTF (__start_BTF/__stop_BTF); pass --btf or --vmlinux");
    std::vector<uint8_t> blob(*stop - *start);
    NFM_TRY(target_.space.read(*start, blob.data(), blob.size()));
    NFM_ASSIGN(types_, Types::from_btf_bytes(blob));
    types_source_ = kGuestBtf;
    return {};
  }

  const ProfileOptions& options_;
  const ProfileTarget& target_;

  SymbolTable symbols_;
  std::optional<Types> types_;
  std::string banner_;
  KernelRegions regions_;
  std::string symbols_source_, types_source_, cache_;
  KallsymsSpan kallsyms_span_;  // of the guest's tables, when the symbols are the guest's
  GuestContent content_;

  std::optional<FileProfile> file_profile_;
  std::string image_path_;
  std::vector<uint8_t> image_;
};

}  // namespace

Result<LoadedProfile> load_profile(const ProfileOptions& options, const ProfileTarget& target) {
  NFM_ASSIGN(LoadedProfile profile, ProfileLoader(options, target).load());
  profile.image = options.vmlinux;
  if (profile.image.empty() && !options.kernel_dir.empty()) {
    std::string ignored;
    scan_kernel_dir(options.kernel_dir, &profile.image, &ignored);
  }
  return profile;
}

}  // namespace nfm
